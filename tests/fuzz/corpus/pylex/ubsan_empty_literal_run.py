import os, teacher_model as tm, sys
import teacher_model.sub
fromimport n
 teacher_model as tm, sys
im   fro""mod doc"""
import os
def f(a,
  b)"
import os
def f(a,
  b):  # c"""
    "doc" \
  "more"
   turn 0if x else .5e-3
class A: pass
été = 0xm:  # c"""
    "doc" \
  "more"
   turn 0if x else .5e-3
class A: pass
été = 0xmpom . import teacher_model, utils as u
    from .. impob
