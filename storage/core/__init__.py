"""What every format shares: the interface, argument checks, the marker, files and checksums."""
