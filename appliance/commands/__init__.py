"""``ordo`` sub-commands, one module per area; ``appliance.cli`` assembles them."""
