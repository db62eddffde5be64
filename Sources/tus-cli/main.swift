print("tus-cli: not yet implemented")
