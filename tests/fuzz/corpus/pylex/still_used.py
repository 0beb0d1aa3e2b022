import teacher_model as tm
x = tm.f()
