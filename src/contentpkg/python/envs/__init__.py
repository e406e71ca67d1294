"""Python environments made of the store: views, overlays, tools, and their gc roots."""
