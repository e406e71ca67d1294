"""Building wheels through PEP 517, in isolated environments made of store entries."""
