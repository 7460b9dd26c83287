"""Small shared helpers: atomic IO, devices, seeding."""
