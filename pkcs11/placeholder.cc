// Replaced by the token layer.
