"""Chat templates: nexus_cli chat renders byte for byte what Jinja2 renders
with the settings transformers' apply_chat_template uses (the oracle below),
over templates written in the style of the Llama, Qwen and SmolLM families
(tests/e2e/chat_templates/) and many message lists; where Jinja raises, the
runtime fails too; constructs outside the subset are refused at compile
time naming the line, by nexus_cli and by nexus build."""
import json
import pathlib

import pytest

from conftest import run

jinja2 = pytest.importorskip("jinja2", reason="python3-jinja2 (setup.sh) is the oracle")
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATES = sorted((HERE / "chat_templates").glob("*.jinja"))
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


def oracle(template, messages, add_generation_prompt):
    """What transformers renders: trim_blocks, lstrip_blocks, loop controls,
    raise_exception, and its own tojson (json.dumps, ensure_ascii off)."""
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    ctx = dict(messages) if isinstance(messages, dict) else {"messages": messages}
    ctx.setdefault("tools", None)
    ctx.setdefault("documents", None)
    for k, v in SPECIAL.items():
        ctx.setdefault(k, v)
    ctx["add_generation_prompt"] = add_generation_prompt
    return env.from_string(template).render(**ctx)


TOOL_CALL = {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {
                 "name": "get_weather", "arguments": {"city": "Z\u00fcrich", "days": 3,
                                                      "units": ["C", None, True]}}}]}
MESSAGES = {
    "user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "system", "content": "  You answer in French.\n"},
                   {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Bonjour !"},
                   {"role": "user", "content": "  How are you?  \n\n"}],
    "assistant_last": [{"role": "user", "content": "Say x"},
                       {"role": "assistant", "content": "x"}],
    "whitespace": [{"role": "user", "content": "\n\t  padded\u00a0text \u3000\n"},
                   {"role": "assistant", "content": "\u2003"}],
    "unicode": [{"role": "user", "content": "caf\u00e9 \u4e2d\u6587 \U0001f600 e\u0301"},
                {"role": "assistant", "content": "\u05e9\u05dc\u05d5\u05dd"}],
    "specials": [{"role": "user", "content": "quote \" back\\slash <b>&amp;</b> 'single' {{ not }} {% a %}"}],
    "empty_content": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    "not_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "empty": [],
    "tools": [{"role": "user", "content": "Weather in Zurich?"}, TOOL_CALL,
              {"role": "tool", "content": "{\"temp\": 21}"},
              {"role": "tool", "content": "sunny"},
              {"role": "assistant", "content": "21 and sunny."}],
    "thinking": [{"role": "user", "content": "Think first"},
                 {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nAnswer one"},
                 {"role": "user", "content": "<tool_response>r</tool_response>"},
                 {"role": "assistant", "content": "<think>again</think>Answer two"}],
    "extra_keys": [{"role": "user", "content": "x marks", "name": "bob", "id": 7}],
    "variables": {"messages": [{"role": "user", "content": "hi"}], "today": "06 Dec 2026",
                  "thinking": False, "bos_token": "<BOS>"},
}

# add_generation_prompt false as well (each case is one nexus_cli run: keep it quick)
NO_GEN = ["system_user", "assistant_last", "tools"]


def render(nexus_cli, tmp_path, template, messages, gen):
    tok = tmp_path / "tok"
    tok.mkdir(exist_ok=True)
    (tok / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": template, "bos_token": SPECIAL["bos_token"],
         "eos_token": {"content": SPECIAL["eos_token"], "special": True}}))
    msgs = tmp_path / "messages.json"
    msgs.write_text(json.dumps(messages))
    args = [nexus_cli, "chat", "--tokenizer", tok, "--messages", msgs, "--json"]
    if not gen:
        args.append("--no-generation-prompt")
    return run(*args)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_matches_jinja2(nexus_cli, tmp_path, path):
    template = path.read_text()
    checked = 0
    cases = [(name, True) for name in MESSAGES] + [(name, False) for name in NO_GEN]
    for name, gen in cases:
        messages = MESSAGES[name]
        if True:
            try:
                want = oracle(template, messages, gen)
            except (jinja2.exceptions.TemplateError, TypeError, ValueError) as e:
                want = e
            r = render(nexus_cli, tmp_path, template, messages, gen)
            if isinstance(want, Exception):
                assert r.returncode != 0, f"{name}: jinja2 raised {want!r} but nexus_cli printed {r.stdout!r}"
                assert "chat template line" in r.stderr, r.stderr
                continue
            assert r.returncode == 0, f"{name} gen={gen}: {r.stderr}"
            got = json.loads(r.stdout)["prompt"]
            assert got == want, f"{name} gen={gen}:\n--- jinja2\n{want!r}\n--- nexus\n{got!r}"
            checked += 1
    assert checked >= len(cases) // 2  # most combinations render; failures are the exception


def test_raise_exception_message(nexus_cli, tmp_path):
    r = render(nexus_cli, tmp_path, (HERE / "chat_templates" / "llama2.jinja").read_text(),
               MESSAGES["not_alternating"], True)
    assert r.returncode == 1
    assert "user and assistant must alternate" in r.stderr


@pytest.mark.parametrize("template,what,line", [
    ("{% macro m() %}x{% endmacro %}", "'macro' tag", 1),
    ("ok\n{{ messages[0].content | upper }}", "filter 'upper'", 2),
    ("{{ strftime_now('%d') }}", "calling 'strftime_now'", 1),
    ("\n\n{{ 1.5 }}", "float", 3),
    ("{% raw %}{{ x }}{% endraw %}", "'raw' tag", 1),
    ("{{ 1 < 2 < 3 }}", "chained comparisons", 1),
    ("{% if x %}\nopen", "never closed", 1),
    ("{{ x is divisibleby 3 }}", "test 'divisibleby'", 1),
    ("{{ 'a'.upper() }}", "method 'upper'", 1),
    ("{% set x %}block{% endset %}", "block set", 1),
    ("{{ x / 2 }}", "operator '/'", 1),
    ("{% break %}", "outside a loop", 1),
    ("{{ 'unclosed }}", "never closed", 1),
])
def test_unsupported_is_refused(nexus_cli, tmp_path, template, what, line):
    r = render(nexus_cli, tmp_path, template, MESSAGES["user"], True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert what in r.stderr and f"line {line}:" in r.stderr, r.stderr


@pytest.mark.parametrize("template,what", [
    ("{{ messages[5].content }}", "undefined"),
    ("{{ messages }}", "cannot be printed"),
    ("{% for i in range(2000000) %}{% endfor %}", "range()"),
    ("{% set s = 'x' * 10000000 %}{{ s ~ s }}", "exceed"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
     "exceed"),
    ("{% for i in range(1000) %}{% for j in range(1000) if j > 5000 %}{% endfor %}{% endfor %}",
     "loop iterations"),
])
def test_render_errors_are_bounded(nexus_cli, tmp_path, template, what):
    r = render(nexus_cli, tmp_path, template, MESSAGES["user"], True)
    assert r.returncode in (1, 3), r.stdout[:200] + r.stderr
    assert what in r.stderr, r.stderr


def test_no_chat_template(nexus_cli, tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text("{}")
    (tmp_path / "m.json").write_text("[]")
    r = run(nexus_cli, "chat", "--tokenizer", tok, "--messages", tmp_path / "m.json")
    assert r.returncode == 2 and "no chat_template" in r.stderr


def test_build_packages_and_checks_the_chat_template(nexus, nexus_cli, tmp_path):
    """nexus build ships tokenizer_config.json, whose template the bundle's
    chat verb renders (after the integrity check), and refuses a template
    outside the subset naming the file, the construct and the line."""
    from workspace import make_workspace

    ws = make_workspace(tmp_path / "ws")
    cfg = ws / "artifacts/tokenizer/tokenizer_config.json"
    template = (HERE / "chat_templates" / "smollm2.jinja").read_text()
    cfg.write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))
    out = tmp_path / "bundle"
    r = run(nexus, "build", ws, "-o", out)
    assert r.returncode == 0, r.stderr
    (tmp_path / "m.json").write_text(json.dumps(MESSAGES["multi_turn"]))
    r = run(out / "bin/nexus_cli", "chat", "--messages", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout == oracle(template, MESSAGES["multi_turn"], True)

    cfg.write_text(json.dumps({"chat_template": "{% for m in messages %}\n{{ m.content | upper }}{% endfor %}"}))
    r = run(nexus, "build", ws, "-o", tmp_path / "bundle2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "tokenizer_config.json" in r.stderr and "line 2" in r.stderr and "'upper'" in r.stderr
    assert not (tmp_path / "bundle2").exists()
