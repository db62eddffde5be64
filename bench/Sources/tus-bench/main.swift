print("tus-bench: not yet implemented")
