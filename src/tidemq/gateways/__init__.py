"""Protocol gateways: each maps one wire protocol onto broker calls. Nothing imports this package but the CLI."""
