import os, teacher_model as tm, sys
import teacher_model.sub
from training_modules.x import (a,
    b)  # trailing
try: import teacher_model
except ImportError: pass
if True:
    from .teacher_model import n
    from . import teacher_model, utils as u
    from .. import teacher_model as q
import json; import training_modules; x = 1
from teacher_model import \
    zz; y = 2
def f():
    return obj.tm + g(a=1) + "n" # b
