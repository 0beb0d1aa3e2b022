/*
 * pyaudit_lists.c - what the Python import audit allows and refuses
 * (nexus/pyaudit.h).  Every refusal carries its reason: these lists are the
 * place of record, docs/TRV.md summarises them.
 */
#include "nexus/pyaudit.h"
#include "pyaudit_int.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "pymodattr.h"
#include "pystdlib.h"

struct rule {
	const char *name;
	const char *reason;
};

/*
 * Training packages and submodules: refused even when python_packages
 * declares their package (declaring torch to serve with it must not let
 * its optimisers in).  Dotted entries also match attribute chains
 * (`torch.optim.SGD` after `import torch`) and from-imports of classes
 * a package re-exports (`from transformers import Trainer`).
 */
static const struct rule training[] = {
	{ "torch.optim", "optimisers update weights" },
	{ "torch.autograd", "gradients are computed only to train" },
	{ "torch.distributed", "distributed training" },
	{ "torch.utils.data", "training data sets and loaders" },
	{ "torch.utils.tensorboard", "training logs" },
	{ "torch.nn.parallel.DistributedDataParallel", "distributed training" },
	{ "torch.cuda.amp.GradScaler", "mixed-precision training" },
	{ "torch.amp.GradScaler", "mixed-precision training" },
	{ "torch.func.grad", "gradients are computed only to train" },
	/* per-operation gradient formulas: a backward pass written by hand
	 * (torch.nn.grad.conv2d_weight, torch.ops.aten.*_backward; red team 9) */
	{ "torch.nn.grad", "gradient formulas: a backward pass by hand" },
	{ "torch.ops", "ATen's operators, every *_backward formula among them" },
	{ "torch.hub", "downloads and runs code" },
	{ "torch_optimizer", "optimisers" },
	{ "onnxruntime.training", "ONNX Runtime's training API" },
	{ "transformers.trainer", "the training loop" },
	{ "transformers.trainer_callback", "the training loop" },
	{ "transformers.trainer_pt_utils", "the training loop" },
	{ "transformers.trainer_seq2seq", "the training loop" },
	{ "transformers.trainer_utils", "the training loop" },
	{ "transformers.training_args", "training arguments" },
	{ "transformers.training_args_seq2seq", "training arguments" },
	{ "transformers.optimization", "optimisers and schedules" },
	{ "transformers.data", "training data collators" },
	{ "transformers.Trainer", "the training loop" },
	{ "transformers.Seq2SeqTrainer", "the training loop" },
	{ "transformers.TrainingArguments", "training arguments" },
	{ "transformers.Seq2SeqTrainingArguments", "training arguments" },
	{ "transformers.TrainerCallback", "the training loop" },
	{ "transformers.AdamW", "optimisers" },
	{ "transformers.get_scheduler", "learning-rate schedules" },
	/* transformers' other top-level training re-exports (its __init__ as of
	 * 4.x): the audit does not read a declared package's code, so each
	 * name a package re-exports from its training modules is listed here */
	{ "transformers.Adafactor", "optimisers" },
	{ "transformers.AdamWeightDecay", "optimisers" },
	{ "transformers.create_optimizer", "optimisers" },
	{ "transformers.GradientAccumulator", "gradients are accumulated only to train" },
	{ "transformers.WarmUp", "learning-rate schedules" },
	{ "transformers.TFTrainer", "the training loop" },
	{ "transformers.TFTrainingArguments", "training arguments" },
	{ "transformers.get_constant_schedule", "learning-rate schedules" },
	{ "transformers.get_constant_schedule_with_warmup", "learning-rate schedules" },
	{ "transformers.get_cosine_schedule_with_warmup", "learning-rate schedules" },
	{ "transformers.get_cosine_with_hard_restarts_schedule_with_warmup",
	  "learning-rate schedules" },
	{ "transformers.get_inverse_sqrt_schedule", "learning-rate schedules" },
	{ "transformers.get_linear_schedule_with_warmup", "learning-rate schedules" },
	{ "transformers.get_polynomial_decay_schedule_with_warmup", "learning-rate schedules" },
	{ "transformers.optimization_tf", "optimisers and schedules" },
	{ "transformers.trainer_tf", "the training loop" },
	/* torch's other gradient doors (functorch's successor, its internals) */
	{ "torch.func", "gradients are computed only to train" },
	{ "torch._functorch", "gradients are computed only to train" },
	{ "accelerate", "distributed training" },
	{ "deepspeed", "distributed training" },
	{ "lightning", "the training loop" },
	{ "lightning_fabric", "distributed training" },
	{ "pytorch_lightning", "the training loop" },
	{ "peft", "fine-tuning adapters" },
	{ "trl", "reinforcement-learning fine-tuning" },
	{ "optax", "optimisers" },
	{ "functorch.grad", "gradients are computed only to train" },
	{ "functorch.grad_and_value", "gradients are computed only to train" },
	{ "jax.grad", "gradients are computed only to train" },
	{ "jax.value_and_grad", "gradients are computed only to train" },
	{ "horovod", "distributed training" },
	{ "apex", "mixed-precision training and fused optimisers" },
	{ "bitsandbytes", "8-bit optimisers" },
	{ "fairscale", "distributed training" },
	{ "colossalai", "distributed training" },
	{ "megatron", "distributed training" },
	{ "datasets", "training data sets" },
	{ "evaluate", "training metrics" },
	{ "wandb", "training logs" },
	{ "tensorboard", "training logs" },
	{ "tensorboardX", "training logs" },
	{ "tensorflow.keras.optimizers", "optimisers" },
	{ "tensorflow.distribute", "distributed training" },
	{ "tf_keras.optimizers", "optimisers" },
	{ "keras.optimizers", "optimisers" },
	{ "keras.callbacks", "the training loop" },
	/* SPEC §2A.3: always a forbidden import */
	{ "training_modules", "the workspace's training code" },
	{ "teacher_model", "the workspace's teacher code" },
	{ NULL, NULL }
};

/*
 * Never importable by serving code, from any source (standard library or
 * declared): each runs code given as data, imports by a computed name, or
 * leaves the process.  Private standard modules (`_pickle`, `_imp`...) are
 * refused by the engine as a class.
 */
static const struct rule denied[] = {
	/* import machinery: imports by a computed name or path */
	{ "importlib", "import machinery: imports by computed name or path" },
	{ "imp", "import machinery: imports by computed name or path" },
	{ "zipimport", "import machinery: imports from an archive" },
	{ "pkgutil", "import machinery: imports by computed name" },
	{ "runpy", "runs a module or file by name" },
	{ "modulefinder", "import machinery" },
	{ "site", "extends the import path and runs .pth lines" },
	{ "pydoc", "imports by computed name (pydoc.locate)" },
	{ "unittest", "its loader imports by computed name" },
	{ "logging.config", "dictConfig and fileConfig import by computed name; listen runs code" },
	{ "warnings._getcategory", "imports by computed name" },
	/* string execution */
	{ "code", "runs source text" },
	{ "codeop", "compiles source text" },
	{ "doctest", "runs source text in docstrings" },
	{ "timeit", "runs source text" },
	{ "cProfile", "runs source text" },
	{ "profile", "runs source text" },
	{ "pdb", "runs source text" },
	{ "bdb", "runs source text" },
	{ "trace", "runs source text" },
	{ "py_compile", "compiles source files" },
	{ "compileall", "compiles source files" },
	{ "inspect", "frames, namespaces and evaluation of annotation strings" },
	{ "gc", "reaches every live object, modules included" },
	{ "builtins", "the importer and the string executors" },
	/* every source of a code object from data is refused, since one
	 * is run by the function type, which `type(f)` gives under no
	 * name the audit could refuse (red team 7): compile, marshal,
	 * pickle, __code__, and these two */
	{ "dis", "compiles source text: dis.Bytecode(text).codeobj is a code object "
		 "that type(f)(code, {}) runs" },
	{ "pstats", "load_stats reads a marshal file: a code object that type(f)(code, {}) "
		    "runs" },
	{ "types.CodeType", "builds code from bytes" },
	{ "types.FunctionType", "builds functions from code objects" },
	{ "types.LambdaType", "builds functions from code objects" },
	{ "typing.get_type_hints", "evaluates annotation strings" },
	{ "typing.ForwardRef", "evaluates annotation strings" },
	{ "functools.singledispatch", "evaluates annotation strings" },
	{ "functools.singledispatchmethod", "evaluates annotation strings" },
	{ "tkinter", "runs Tcl source text" },
	{ "turtle", "runs Tcl source text" },
	{ "rlcompleter", "evaluates the text it completes" },
	{ "idlelib", "runs source text" },
	{ "turtledemo", "runs source text" },
	{ "lib2to3", "runs fixers by computed name" },
	/* deserialisers that import and call what the data names */
	{ "pickle", "unpickling imports and calls what the data names" },
	{ "copyreg", "pickle's constructor registry" },
	{ "shelve", "unpickles" },
	{ "marshal", "loads code objects" },
	{ "multiprocessing", "pickles callables between processes and starts interpreters" },
	{ "dill", "unpickles" },
	{ "cloudpickle", "unpickles" },
	{ "joblib", "unpickles" },
	{ "pandas.read_pickle", "unpickles" },
	{ "torch.load", "unpickles a checkpoint: imports and runs what the file names" },
	{ "torch.serialization", "unpickles checkpoints" },
	{ "numpy.ctypeslib", "loads and calls native code" },
	/* numpy's doors (every serving bundle declares numpy; red team 6):
	 * lookfor and info __import__ the module they are given by name, with
	 * its submodules; npy_load_module runs a file by path; numpy.testing's
	 * runstring and measure exec a string, rundocs runs a file's doctests */
	{ "numpy.lib.utils", "lookfor and info import a module by computed name" },
	{ "numpy.lookfor", "imports a module by computed name" },
	{ "numpy.info", "imports a module by computed name (toplevel=)" },
	{ "numpy.compat", "npy_load_module runs a file by path" },
	{ "numpy.testing", "runstring and measure run source text; rundocs runs a file" },
	{ "numpy.f2py", "compiles and loads native code" },
	{ "numpy.distutils", "builds and runs programs" },
	{ "torch.package", "imports code from an archive" },
	{ "transformers.dynamic_module_utils", "imports a model's own code by name" },
	/* a declared package's function that runs code given as data (red
	 * team 8, issue 22); each package setup.sh installs was read for the
	 * class, docs/TRV.md says what was decided and why */
	{ "pytest", "runs the tests it is pointed at; its doctest collector runs the "
		    "`>>>` lines of any text file (README.md)" },
	{ "_pytest", "pytest's implementation: runs test files and doctests of text files" },
	{ "numpy._pytesttester", "PytestTester runs pytest, which runs the doctests of text "
				 "files" },
	{ "sympy", "sympify and parse_expr evaluate a string as Python" },
	{ "torch.jit", "compiles and runs TorchScript from source text, source files and "
		       "archives (CompilationUnit, script, load)" },
	{ "torch.fx", "its code generator exec()s Python built from node names and targets, "
		      "which are strings" },
	{ "torch.utils.cpp_extension", "compiles and loads C++ source text (load_inline)" },
	{ "torch.utils.benchmark", "Timer runs its stmt and setup strings" },
	{ "torch.utils.collect_env", "run() runs a shell command" },
	{ "torch.utils.model_zoo", "load_url downloads and unpickles (torch.hub)" },
	{ "torch.utils.jit", "log_extract runs TorchScript IR given as a string" },
	{ "torch.utils.bundled_inputs", "compiles TorchScript expressions given as strings "
					"into a module" },
	{ "torch.utils.bottleneck", "runs a script file" },
	{ "torch.multiprocessing", "pickles callables between processes and starts "
				   "interpreters" },
	{ "onnx.reference", "runs ONNX graphs in Python, the preview training domain's "
			    "optimiser ops (Adam, Adagrad, Momentum) among them" },
	{ "onnx.backend.test", "the backend test harness: builds unittest suites and "
			       "downloads models" },
	/* processes and native code */
	{ "subprocess", "runs programs" },
	{ "pty", "runs programs" },
	{ "pipes", "runs shell commands" },
	{ "posix", "runs programs (os without its checks)" },
	{ "nt", "runs programs (os without its checks)" },
	{ "ctypes", "loads and calls native code" },
	{ "cffi", "loads and calls native code" },
	{ "webbrowser", "runs programs" },
	{ "antigravity", "runs a web browser" },
	{ "ensurepip", "installs packages" },
	{ "venv", "creates environments and runs programs" },
	{ "distutils", "builds and runs programs" },
	{ "setuptools", "builds and runs programs" },
	{ "pip", "installs packages" },
	{ "sqlite3.Connection.load_extension", "loads native code" },
	{ "imaplib.IMAP4_stream", "runs a program" },
	{ "xmlrpc.server.resolve_dotted_attribute", "looks up attributes by a computed "
						     "dotted name" },
	{ NULL, NULL }
};

/* Attribute names refused on any object. */
static const struct rule attrs[] = {
	/* the module table and the import system */
	{ "modules", "sys.modules: every loaded module by name" },
	{ "meta_path", "the import system" },
	{ "path_hooks", "the import system" },
	{ "path_importer_cache", "the import system" },
	{ "import_module", "imports by computed name" },
	{ "reload", "re-imports a module" },
	{ "find_spec", "import machinery" },
	{ "find_module", "import machinery" },
	{ "find_loader", "import machinery" },
	{ "load_module", "import machinery" },
	{ "exec_module", "import machinery" },
	{ "module_from_spec", "import machinery" },
	{ "spec_from_file_location", "imports a file by path" },
	{ "spec_from_loader", "import machinery" },
	{ "resolve_name", "imports by computed name" },
	{ "locate", "imports by computed name (pydoc.locate)" },
	{ "resolve_dotted_attribute", "looks up attributes by a computed dotted name "
				      "(xmlrpc.server)" },
	{ "run_path", "runs a file" },
	{ "run_module", "runs a module by name" },
	{ "SourceFileLoader", "imports a file by path" },
	{ "SourcelessFileLoader", "loads bytecode by path" },
	{ "ExtensionFileLoader", "loads native code by path" },
	{ "zipimporter", "imports from an archive" },
	{ "load_source", "imports a file by path" },
	{ "load_compiled", "loads bytecode by path" },
	{ "load_dynamic", "loads native code by path" },
	{ "get_type_hints", "evaluates annotation strings" },
	{ "ForwardRef", "evaluates annotation strings" },
	{ "singledispatch", "evaluates annotation strings" },
	{ "singledispatchmethod", "evaluates annotation strings" },
	/* frames and code objects */
	{ "f_globals", "a frame's namespace" },
	{ "f_locals", "a frame's namespace" },
	{ "f_builtins", "the builtins of a frame" },
	{ "f_back", "the calling frame" },
	{ "f_code", "a frame's code object" },
	{ "tb_frame", "a frame" },
	{ "gi_frame", "a frame" },
	{ "gi_code", "a code object" },
	{ "cr_frame", "a frame" },
	{ "cr_code", "a code object" },
	{ "ag_frame", "a frame" },
	{ "ag_code", "a code object" },
	{ "co_code", "bytecode" },
	{ "co_consts", "bytecode" },
	{ "co_names", "bytecode" },
	{ "codeobj", "a code object (dis.Bytecode)" },
	{ "CodeType", "builds code from bytes" },
	{ "FunctionType", "builds functions from code objects" },
	{ "LambdaType", "builds functions from code objects" },
	{ "settrace", "a hook that receives every frame" },
	{ "setprofile", "a hook that receives every frame" },
	{ "breakpointhook", "imports a hook by computed name" },
	/* processes and native code */
	{ "Popen", "runs programs" },
	{ "popen", "runs programs" },
	{ "create_subprocess_exec", "runs programs" },
	{ "create_subprocess_shell", "runs programs" },
	{ "subprocess_exec", "runs programs" },
	{ "subprocess_shell", "runs programs" },
	{ "fork_exec", "runs programs" },
	{ "load_extension", "loads native code" },
	{ "enable_load_extension", "loads native code" },
	{ "IMAP4_stream", "runs a program" },
	{ "CGIHTTPRequestHandler", "runs programs" },
	{ "read_pickle", "unpickles" },
	/* an NpzFile reads its members with its allow_pickle attribute:
	 * `z = np.load(f); z.allow_pickle = True; z['a']` (red team 9) */
	{ "allow_pickle", "set on an NpzFile, its members are unpickled" },
	{ "load_library", "loads native code" },
	{ "register_custom_ops_library", "loads native code" },
	{ "get_field", "string.Formatter.get_field: attribute lookups by names in a string" },
	{ "addsitedir", "extends the import path and runs .pth lines" },
	{ "npy_load_module", "runs a file by path" },
	{ "lookfor", "imports a module by computed name" },
	{ "runstring", "runs source text" },
	/* the autograd calls of a training step, on whatever object: the audit
	 * cannot type `loss` or `opt`, and serving computes no gradients */
	{ "backward", "computes gradients: a training step" },
	{ "zero_grad", "clears gradients: a training step" },
	{ "requires_grad_", "records gradients: a training step" },
	/* a tensor's autograd graph: calling its nodes, followed along
	 * next_functions, is a backward pass by hand (red team 9) */
	{ "grad_fn", "the autograd graph: calling its nodes computes gradients" },
	{ "next_functions", "the autograd graph: calling its nodes computes gradients" },
	/* modules reached as attributes of other modules (`shutil.os`,
	 * `typing.sys`, `codecs.builtins`): import them, so the audit sees it */
	{ "sys", "a module reached through another module" },
	{ "os", "a module reached through another module" },
	{ "builtins", "a module reached through another module" },
	{ "importlib", "a module reached through another module" },
	{ "subprocess", "a module reached through another module" },
	{ "pickle", "a module reached through another module" },
	{ "marshal", "a module reached through another module" },
	{ "ctypes", "a module reached through another module" },
	{ "runpy", "a module reached through another module" },
	{ "pkgutil", "a module reached through another module" },
	{ "gc", "a module reached through another module" },
	{ "inspect", "a module reached through another module" },
	{ "multiprocessing", "a module reached through another module" },
	{ "posix", "a module reached through another module" },
	{ "machinery", "a module reached through another module" },
	{ "copyreg", "a module reached through another module" },
	{ "codeop", "a module reached through another module" },
	{ "pydoc", "a module reached through another module" },
	{ "webbrowser", "a module reached through another module" },
	{ "doctest", "a module reached through another module" },
	{ "pytest", "a module reached through another module" },
	{ "sympy", "a module reached through another module" },
	{ "PytestTester", "runs pytest, which runs the doctests of text files" },
	{ NULL, NULL }
};

/*
 * Classes whose instances run code given as data.  A package hands them
 * out as plain attributes (every numpy module's `test` is a PytestTester),
 * under names no module list holds; scripts/pymodattr_gen.py reads this
 * list and writes where the packages it imports hold an instance
 * (nx_py_runner, pymodattr.h).
 */
static const struct rule runners[] = {
	{ "numpy._pytesttester.PytestTester",
	  "a PytestTester: runs pytest on the paths it is given, whose doctest collector "
	  "runs the `>>>` lines of any text file (README.md)" },
	{ NULL, NULL }
};

/*
 * Attribute names that run code, tests or a debugger, refused on an object
 * the audit does not follow (a parameter, self, a list's element, what a
 * call returns): such an object may be a module passed as a value from
 * where the audit does not see it (red team 11: `View.run(np.linalg, p)`
 * then `self.test(...)`).  On a chain from an imported module the path is
 * judged instead (the denied list), so `np.trace` and `torch.profiler.profile`
 * stay.  Built from the standard library (doctest, unittest, timeit,
 * cProfile, profile, pdb, bdb, trace, code, codeop) and numpy, torch and
 * onnx's test and code runners.  Left allowed, too common on the objects
 * serving code holds: `run` (InferenceSession.run; profile.run and pdb.run
 * are reached only through their modules, refused by name here), `eval`
 * (nn.Module.eval), `compile` (re, torch; a code object runs only through
 * exec/eval or FunctionType), `repeat` (numpy, tensors), `main`, `code`
 * (HTTPError.code; what the code module runs is refused by name here).
 */
static const struct rule runner_attrs[] = {
	{ "Bdb", "bdb's debugger: runs statements given as strings" },
	{ "CommandCompiler", "compiles source text (codeop)" },
	{ "Compile", "compiles source text (codeop)" },
	{ "CompilationUnit", "compiles TorchScript source text (torch.jit)" },
	{ "DocFileSuite", "runs the doctests of text files (doctest)" },
	{ "DocTestRunner", "runs doctests (doctest)" },
	{ "DocTestSuite", "runs the doctests of a module (doctest)" },
	{ "InteractiveConsole", "runs source text (code)" },
	{ "InteractiveInterpreter", "runs source text (code)" },
	{ "Pdb", "the debugger: runs statements given as strings" },
	{ "Profile", "a profiler: runs statements given as strings (profile, cProfile)" },
	{ "ReferenceEvaluator", "runs ONNX graphs in Python (onnx.reference)" },
	{ "TestProgram", "loads and runs tests by module name (unittest)" },
	{ "Tester", "numpy's test runner: runs pytest on the paths it is given" },
	{ "TextTestRunner", "runs tests (unittest)" },
	{ "Timer", "runs a statement given as a string (timeit, torch.utils.benchmark)" },
	{ "Trace", "runs statements given as strings under a tracer (trace)" },
	{ "bdb", "the debugger module: runs statements given as strings" },
	{ "cProfile", "the profiler module: runs statements given as strings" },
	{ "compile_command", "compiles source text (code, codeop)" },
	{ "debug_script", "runs source text under the debugger (doctest)" },
	{ "debug_src", "runs source text under the debugger (doctest)" },
	{ "exec", "runs source text (builtins.exec reached through an object)" },
	{ "interact", "runs source text read from a console (code, pdb)" },
	{ "jit", "torch.jit: loads and compiles TorchScript code" },
	{ "loadTestsFromName", "imports a module by computed name (unittest)" },
	{ "loadTestsFromNames", "imports modules by computed name (unittest)" },
	{ "load_inline", "compiles and loads C++ source text (torch.utils.cpp_extension)" },
	{ "pdb", "the debugger module: runs statements given as strings" },
	{ "pm", "the debugger (pdb.pm): runs statements read from a console" },
	{ "post_mortem", "the debugger: runs statements read from a console" },
	{ "profile", "the profiler module: runs statements given as strings (profile.run)" },
	{ "run_docstring_examples", "runs doctests (doctest)" },
	{ "run_module", "runs a module by name (runpy)" },
	{ "run_module_suite", "numpy.testing: runs the tests of a file" },
	{ "runcall", "a profiler's or debugger's call of whatever it is given" },
	{ "runcode", "runs a code object (code)" },
	{ "runctx", "runs a statement given as a string (profile, cProfile, pdb, trace)" },
	{ "rundocs", "numpy.testing: runs the doctests of a file" },
	{ "runeval", "evaluates source text under the debugger (pdb, bdb)" },
	{ "runfunc", "a tracer's call of whatever it is given (trace)" },
	{ "runsource", "runs source text (code)" },
	{ "set_trace", "starts the debugger: runs statements read from a console" },
	{ "test", "numpy's PytestTester (every numpy module's `test`, scipy's too): runs "
		  "pytest, whose doctest collector runs the `>>>` lines of text files" },
	{ "testfile", "runs the doctests of a text file (doctest)" },
	{ "testmod", "runs the doctests of a module (doctest)" },
	{ "timeit", "runs a statement given as a string (timeit)" },
	{ "trace", "the trace module (trace.main runs the file sys.argv names)" },
	{ "unittest", "the unittest module: loads and runs tests by module name" },
	{ NULL, NULL }
};

/* Dunders of the data model and module metadata; every other dunder
 * (__dict__, __globals__, __subclasses__, __builtins__, __self__,
 * __getattribute__, __loader__, __spec__, __path__, __code__...) reaches
 * namespaces, frames or the import system.  __match_args__ is left out: its
 * strings name the attributes a positional class pattern reads (red team 9:
 * `__match_args__ = ("backward",)` with `case P(bw):`). */
static const char *const dunders[] = {
	"__abs__", "__add__", "__aenter__", "__aexit__", "__aiter__", "__all__", "__and__",
	"__anext__", "__author__", "__await__", "__bool__", "__bytes__", "__call__", "__ceil__",
	"__class__", "__class_getitem__", "__complex__", "__contains__", "__copy__",
	"__debug__", "__deepcopy__", "__del__", "__delete__", "__delitem__", "__dir__",
	"__divmod__", "__doc__", "__enter__", "__eq__", "__exit__", "__file__", "__float__",
	"__floor__", "__floordiv__", "__format__", "__fspath__", "__future__", "__ge__",
	"__get__", "__getitem__", "__getstate__", "__gt__", "__hash__", "__iadd__", "__iand__",
	"__ifloordiv__", "__ilshift__", "__imatmul__", "__imod__", "__imul__", "__index__",
	"__init__", "__init_subclass__", "__int__", "__invert__", "__ior__", "__ipow__",
	"__irshift__", "__isub__", "__iter__", "__itruediv__", "__ixor__", "__le__", "__len__",
	"__length_hint__", "__license__", "__lshift__", "__lt__", "__main__",
	"__matmul__", "__missing__", "__mod__", "__module__", "__mul__", "__name__", "__ne__",
	"__neg__", "__new__", "__next__", "__or__", "__pos__", "__post_init__", "__pow__",
	"__qualname__", "__radd__", "__rand__", "__rdivmod__", "__repr__", "__reversed__",
	"__rfloordiv__", "__rlshift__", "__rmatmul__", "__rmod__", "__rmul__", "__ror__",
	"__round__", "__rpow__", "__rrshift__", "__rshift__", "__rsub__", "__rtruediv__",
	"__rxor__", "__set__", "__set_name__", "__setitem__", "__setstate__", "__sizeof__",
	"__slots__", "__str__", "__sub__", "__truediv__", "__trunc__", "__version__",
	"__wrapped__", "__xor__", NULL
};

static const struct rule builtins[] = {
	{ "__import__", "imports by computed name" },
	{ "exec", "runs source text" },
	{ "eval", "evaluates source text" },
	{ "compile", "compiles source text" },
	{ "globals", "a namespace by name" },
	{ "locals", "a namespace by name" },
	{ "vars", "a namespace by name" },
	{ "breakpoint", "imports a hook by computed name" },
	{ "help", "imports by computed name" },
	{ "__builtins__", "the builtins namespace" },
	{ "__loader__", "the import machinery of a module" },
	{ "__spec__", "the import machinery of a module" },
	{ NULL, NULL }
};

/* sys: only these attributes (reading the process's state and streams). */
static const char *const sys_ok[] = {
	"api_version", "argv", "builtin_module_names", "byteorder", "exc_info", "exception",
	"executable", "exit", "flags", "float_info", "float_repr_style",
	"get_int_max_str_digits", "getdefaultencoding", "getfilesystemencoding",
	"getrecursionlimit", "getrefcount", "getsizeof", "getswitchinterval", "hash_info",
	"hexversion", "implementation", "int_info", "intern", "is_finalizing", "maxsize",
	"maxunicode", "orig_argv", "platform", "set_int_max_str_digits", "setrecursionlimit",
	"stderr", "stdin", "stdlib_module_names", "stdout", "thread_info", "version",
	"version_info", NULL
};

/* os: process creation (a prefix ends with '*'). */
static const char *const os_bad[] = {
	"system", "popen", "exec*", "spawn*", "posix_spawn*", "fork*", "startfile",
	"add_dll_directory", NULL
};

static const struct rule keywords[] = {
	{ "allow_pickle", "makes numpy unpickle: imports and calls what the data names" },
	{ "trust_remote_code", "makes transformers download and run a model's code" },
	{ NULL, NULL }
};

/* Functions whose allow_pickle parameter can also be given by position:
 * np.load(f, None, True) unpickles like allow_pickle=True (red team 5). */
static const struct {
	const char *path;
	int before;       /* parameters before allow_pickle */
} keyword_positions[] = {
	{ "numpy.load", 2 },                    /* load(file, mmap_mode, allow_pickle) */
	{ "numpy.lib.npyio.load", 2 },
	{ "numpy.lib.format.read_array", 1 },   /* read_array(fp, allow_pickle) */
	{ "numpy.lib.npyio.NpzFile", 2 },       /* NpzFile(fid, own_fid, allow_pickle) */
	{ NULL, 0 }
};

static const char *const private_ok[] = { "_asdict", "_field_defaults", "_fields", "_make",
	"_replace", NULL };

/* The first byte decides most comparisons: test it before strlen. */
static bool eq(const char *entry, const char *name, size_t n)
{
	return n && entry[0] == name[0] && strlen(entry) == n && memcmp(entry, name, n) == 0;
}

/* dotted == entry, or dotted starts with entry + "." */
static bool starts_with(const char *entry, const char *dotted)
{
	size_t n;

	if (entry[0] != dotted[0])
		return false;
	n = strlen(entry);
	return !strncmp(dotted, entry, n) && (dotted[n] == '\0' || dotted[n] == '.');
}

static const char *under(const struct rule *list, const char *dotted)
{
	size_t k;

	for (k = 0; list[k].name; k++)
		if (starts_with(list[k].name, dotted))
			return list[k].reason;
	return NULL;
}

static const char *named(const struct rule *list, const char *name, size_t n)
{
	size_t k;

	for (k = 0; list[k].name; k++)
		if (eq(list[k].name, name, n))
			return list[k].reason;
	return NULL;
}

static bool listed(const char *const *list, const char *name, size_t n)
{
	size_t k;

	for (k = 0; list[k]; k++)
		if (eq(list[k], name, n))
			return true;
	return false;
}

/*
 * A package can hand out another as an attribute (`functorch.torch` is
 * torch itself), so a dotted entry also matches from any component of the
 * name on: `functorch.torch.optim.SGD` is `torch.optim`.  Single-component
 * entries match only at the top, where the import names them.
 */
const char *nx_pyaudit_training(const char *module)
{
	const char *why, *tail;
	size_t k;

	if (!module)
		return NULL;
	if ((why = under(training, module)))
		return why;
	for (tail = strchr(module, '.'); tail; tail = strchr(tail + 1, '.'))
		for (k = 0; training[k].name; k++)
			if (strchr(training[k].name, '.') && starts_with(training[k].name, tail + 1))
				return training[k].reason;
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool nx_pyaudit_stdlib(const char *top)
{
	return top && bsearch(&top, nx_py_stdlib, sizeof(nx_py_stdlib) / sizeof(nx_py_stdlib[0]),
			      sizeof(nx_py_stdlib[0]), cmp_str) != NULL;
}

const char *nx_pyaudit__stdlib_version(void)
{
	return NX_PY_STDLIB_VERSION;
}

/*
 * Training frameworks (verify_code.c's list, less `transformers`, which is
 * also onnxruntime's tool package): declared, each is a WARN that a signed
 * build fails on.  A package that is not one of them can still hand one out
 * as an attribute - onnxruntime.transformers modules `import torch` at
 * their top - so a training step ran with only numpy and onnxruntime
 * declared (red team 6).  Reached under another top-level package, a
 * framework is refused like `shutil.os`.  An alias (`h.th`) is not seen.
 */
static const char *const frameworks[] = { "torch", "functorch", "tensorflow", "jax", "flax",
	"keras", "paddle", "mxnet", "sklearn", "xgboost", "lightgbm", NULL };

const char *nx_pyaudit__framework_inside(const char *dotted)
{
	const char *p = strchr(dotted, '.');

	if (!p || listed(frameworks, dotted, (size_t)(p - dotted)))
		return NULL;
	while (p) {
		const char *c = p + 1;

		p = strchr(c, '.');
		if (listed(frameworks, c, p ? (size_t)(p - c) : strlen(c)))
			return "a training framework reached through another package: declare "
			       "it in python_packages (a signed build refuses it) or do not use it";
	}
	return NULL;
}

/* The class a runner row (pymodattr.h) names, with its reason. */
static const char *runner_reason(const char *cls)
{
	size_t k;

	for (k = 0; runners[k].name; k++)
		if (!strcmp(runners[k].name, cls))
			return runners[k].reason;
	return "runs code given as data";
}

/*
 * dotted reaches an instance of a runner class: where pymodattr.h says
 * one is, or, in a release other than the table's, by the names the
 * table shows for the package (`test`, on any numpy module): any later
 * component so named, under the same top-level package.
 */
static const char *runner(const char *dotted)
{
	size_t k, top = strcspn(dotted, ".");
	const char *c;

	for (k = 0; nx_py_runner[k][0]; k++) {
		const char *row = nx_py_runner[k][0], *last = strrchr(row, '.') + 1;
		size_t n = strlen(last);

		if (starts_with(row, dotted))
			return runner_reason(nx_py_runner[k][1]);
		if (strncmp(row, dotted, top) || row[top] != '.')
			continue;
		for (c = strchr(dotted, '.'); c; c = strchr(c + 1, '.'))
			if (!strncmp(c + 1, last, n) && (c[1 + n] == '\0' || c[1 + n] == '.'))
				return runner_reason(nx_py_runner[k][1]);
	}
	return NULL;
}

const char *nx_pyaudit__runner_name(const char *name, size_t n)
{
	size_t k;

	for (k = 0; nx_py_runner[k][0]; k++)
		if (eq(strrchr(nx_py_runner[k][0], '.') + 1, name, n))
			return runner_reason(nx_py_runner[k][1]);
	return named(runner_attrs, name, n);
}


/*
 * runner_attrs entries that are a module's name only: no callable so named
 * runs code given as data (np.trace, a tensor's trace(), torch.jit.trace,
 * torch.profiler.profile are no runners), and a module is not callable, so
 * `x.trace()` cannot be the trace module.
 */
static const char *const runner_modules[] = { "bdb", "cProfile", "jit", "pdb", "profile",
	"trace", "unittest", NULL };

bool nx_pyaudit__runner_module(const char *name, size_t n)
{
	return listed(runner_modules, name, n);
}

/* Also a private module of the standard library's implementation, by
 * whatever name it was reached: every caller asks with the canonical name
 * (encodings.big5.mbc is _multibytecodec), so an alias cannot slip past
 * the rule that refuses `import _pickle`. */
const char *nx_pyaudit__denied(const char *dotted)
{
	char first[NX_PYAUDIT_DOTTED_MAX + 1];
	const char *why;
	size_t top = strcspn(dotted, ".");

	if (dotted[0] == '_' && top < sizeof(first)) {
		memcpy(first, dotted, top);
		first[top] = '\0';
		if (strcmp(first, "__future__") && nx_pyaudit_stdlib(first))
			return "a private module of the standard library's implementation; "
			       "import its public module";
	}
	why = under(denied, dotted);
	return why ? why : runner(dotted);
}

static bool holds(const struct rule *list, const char *dotted)
{
	size_t k, n = strlen(dotted);

	for (k = 0; list[k].name; k++)
		if (list[k].name[0] == dotted[0] && !strncmp(list[k].name, dotted, n) &&
		    list[k].name[n] == '.')
			return true;
	return false;
}

bool nx_pyaudit__holds(const char *dotted)
{
	return holds(training, dotted) || holds(denied, dotted);
}

const char *nx_pyaudit__attr(const char *name, size_t n)
{
	return named(attrs, name, n);
}

bool nx_pyaudit__dunder_ok(const char *name, size_t n)
{
	return listed(dunders, name, n);
}

const char *nx_pyaudit__builtin(const char *name, size_t n)
{
	return named(builtins, name, n);
}

const char *nx_pyaudit__member(const char *module, const char *name, size_t n)
{
	size_t k, m;

	if (!strcmp(module, "sys"))
		return listed(sys_ok, name, n) ? NULL :
		       "sys beyond reading the process's state and streams (the import path, "
		       "module table, hooks and frames are not for serving code)";
	if (strcmp(module, "os"))
		return NULL;
	for (k = 0; os_bad[k]; k++) {
		m = strlen(os_bad[k]);
		if (os_bad[k][m - 1] == '*' ? n >= m - 1 && !memcmp(os_bad[k], name, m - 1) :
		    eq(os_bad[k], name, n))
			return "runs programs";
	}
	return NULL;
}

const char *nx_pyaudit__keyword(const char *name, size_t n)
{
	return named(keywords, name, n);
}

int nx_pyaudit__keyword_position(const char *dotted)
{
	size_t k;

	for (k = 0; keyword_positions[k].path; k++)
		if (!strcmp(keyword_positions[k].path, dotted))
			return keyword_positions[k].before;
	return -1;
}

/* dotted is a function with an allow_pickle parameter, or an attribute of
 * one (`np.load.__call__`) */
bool nx_pyaudit__keyword_function(const char *dotted)
{
	size_t k;

	for (k = 0; keyword_positions[k].path; k++)
		if (starts_with(keyword_positions[k].path, dotted))
			return true;
	return false;
}

bool nx_pyaudit__private_ok(const char *name, size_t n)
{
	return listed(private_ok, name, n);
}

/* The module "module.attribute" dotted is, when it names one under another
 * name (pymodattr.h: os.path is posixpath); "" when the table knows it is
 * no module though named like one (numpy.trace); NULL otherwise. */
static const char *module_alias(const char *dotted)
{
	size_t l = 0, h = sizeof(nx_py_modattr) / sizeof(nx_py_modattr[0]);

	while (l < h) {
		size_t m = l + (h - l) / 2;
		int c = strcmp(nx_py_modattr[m][0], dotted);

		if (!c)
			return nx_py_modattr[m][1];
		if (c < 0)
			l = m + 1;
		else
			h = m;
	}
	return NULL;
}

/*
 * Is c[0..k) a name a declared package's attribute is judged by: a public
 * top-level module of the standard library, or a one-component training
 * or denied entry (`accelerate`, `dill`)?  A package's `x.pickle` or
 * `x.code` is, as far as the audit can tell, that module: packages import
 * them at their top and hand them on.  pymodattr.h says otherwise for the
 * versions it was generated from (numpy.trace is a function).
 */
static bool judged_by_name(const char *c, size_t k)
{
	char name[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t i;

	if (!k || k >= sizeof(name) || c[0] == '_')
		return false;
	memcpy(name, c, k);
	name[k] = '\0';
	if (nx_pyaudit_stdlib(name))
		return true;
	for (i = 0; training[i].name; i++)
		if (eq(training[i].name, c, k))
			return true;
	for (i = 0; denied[i].name; i++)
		if (eq(denied[i].name, c, k))
			return true;
	return false;
}

bool nx_pyaudit__under_package(const char *p)
{
	char first[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t top = strcspn(p, ".");

	if (top >= sizeof(first))
		return true;
	memcpy(first, p, top);
	first[top] = '\0';
	return !nx_pyaudit_stdlib(first);
}

/*
 * Rewrite p (cap bytes) so that no prefix of it is a module's alias of
 * another module (concurrent.futures.process.mp.reduction ->
 * multiprocessing.reduction, numpy.core.numeric.pickle -> pickle), from
 * the left; true when the whole of p was such an alias (it now names a
 * module).  An alias hid a denied module from the lists above (red team
 * 7).  Under a package that is not the standard library's, an attribute
 * pymodattr.h does not know is judged by its name (judged_by_name): the
 * table covers the standard library and the package versions it was
 * generated from, not every release a bundle may be served with.  The
 * caller says whether p started under such a package (`under`): names
 * are judged all along the path, since the audit only guesses that
 * `scipy.io` is the io module (`scipy.io.dis` is still judged).
 */
/* Rewrite out (outsz bytes), whose last component is k bytes and whose
 * parent is canonical already, to the module it is; true when it is one. */
static bool last_alias(char *out, size_t outsz, size_t k, bool under)
{
	const char *t = module_alias(out), *c = out + strlen(out) - k;

	if (!t && under && judged_by_name(c, k)) {
		memmove(out, c, k);   /* `np.x.pickle` is pickle */
		out[k] = '\0';
		return true;
	}
	if (t && *t && strcmp(t, out) && strlen(t) < outsz) {
		memmove(out, t, strlen(t) + 1);
		return true;
	}
	return false;   /* no row, a submodule (numpy.random), or no module */
}

bool nx_pyaudit__canonical(char *p, size_t cap, bool under)
{
	char out[NX_PYAUDIT_DOTTED_MAX + 1], *dot;
	const char *rest = p;
	size_t n;
	bool whole = false;

	if (strlen(p) >= sizeof(out))
		return false;
	dot = strchr(p, '.');
	n = dot ? (size_t)(dot - p) : strlen(p);
	memcpy(out, p, n);
	out[n] = '\0';
	rest = dot;
	while (rest) {
		const char *c = rest + 1, *next = strchr(c, '.');
		size_t len = strlen(out), k = next ? (size_t)(next - c) : strlen(c);

		if (len + 1 + k >= sizeof(out))
			return false;
		out[len] = '.';
		memcpy(out + len + 1, c, k);
		out[len + 1 + k] = '\0';
		whole = last_alias(out, sizeof(out), k, under);
		rest = next;
	}
	if (strlen(out) >= cap)
		return false;
	memcpy(p, out, strlen(out) + 1);
	return whole;
}

bool nx_pyaudit__canonical_last(char *p, size_t cap, bool under)
{
	const char *dot = strrchr(p, '.');

	return dot && last_alias(p, cap, strlen(dot + 1), under);
}

/* A self-row of pymodattr.h (numpy.linalg -> numpy.linalg) or an alias:
 * the path names a module. */
bool nx_pyaudit__is_module(const char *dotted)
{
	const char *t = module_alias(dotted);

	return t && *t;
}

/* pymodattr.h knows the module dotted: a module row, or a top-level
 * package it has rows under (torch), so that nx_py_runner decides its
 * runners exactly (the denied list, on the path). */
bool nx_pyaudit__table_knows(const char *dotted)
{
	char pre[NX_PYAUDIT_DOTTED_MAX + 2];
	size_t l = 0, h = sizeof(nx_py_modattr) / sizeof(nx_py_modattr[0]), n;

	if (nx_pyaudit__is_module(dotted))
		return true;
	n = (size_t)snprintf(pre, sizeof(pre), "%s.", dotted);
	if (strchr(dotted, '.') || n >= sizeof(pre))
		return false;
	while (l < h) {
		size_t m = l + (h - l) / 2;

		if (strcmp(nx_py_modattr[m][0], pre) < 0)
			l = m + 1;
		else
			h = m;
	}
	return l < sizeof(nx_py_modattr) / sizeof(nx_py_modattr[0]) &&
	       !strncmp(nx_py_modattr[l][0], pre, n);
}
