"""Framework-free core shared by the admin app and the gateway."""
