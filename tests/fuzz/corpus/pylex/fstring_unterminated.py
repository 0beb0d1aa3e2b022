s = f"{d['k']:>{w}} {x!r}" + rb'\''
"""doc
