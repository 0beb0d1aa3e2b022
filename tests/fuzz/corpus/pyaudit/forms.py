from x import (a,
 b as c,)
try: import y
except E: y = None
if y is None: pass
