from . import (teacher_model, u as v,)
import a.b as c, x
if 1: from x import *; y = 2
