"""Everything that crosses to the office (both ends and their shared wire format)."""
