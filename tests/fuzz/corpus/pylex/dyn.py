m = importlib.import_module("tea" "cher")
exec(x)
__import__(n)
model.eval()
