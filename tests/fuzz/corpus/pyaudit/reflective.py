import sys as s
m = s.modules
t = (s)
from .utils import *
from .. import x
import ｐickle
g = getattr(m, n)
attrgetter(a)
