try: import teacher_model
except E: pass
x = (1,
 2)