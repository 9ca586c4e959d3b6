"""Everything that speaks to hardware: reader protocols (one file each) and transports."""
