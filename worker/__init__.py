"""askbatch's worker side: answering rows, their store, their limits; knows nothing of CSV files."""
