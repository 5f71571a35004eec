import treesynth

ds = treesynth.generate("GSM8K-style grade-school math word problems", preset="gsm8k", size=20, depth=2)
print(ds.tree)
print(ds.head(2))
