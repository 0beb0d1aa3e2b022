"""mod doc"""
import os
def f(a,
  b):  # c
    "doc" \
  "more"
    x = f"{a['k']:>{w}} 'q" + rb'\''
    return 1if x else .5e-3
class A: pass
été = 0x1F
