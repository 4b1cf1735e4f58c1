"""Services: the use cases of the product, called by the API, the pages and the CLI."""
