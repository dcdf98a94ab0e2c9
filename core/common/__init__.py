"""The ground floor: helpers every layer may use (escaping text from data, small frame helpers,
the names that cross layers, the progress callback type)."""
