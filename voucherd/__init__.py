"""voucherd: a self-hosted voucher platform with one domain core and many API faces."""

__version__ = "0.1.0"
