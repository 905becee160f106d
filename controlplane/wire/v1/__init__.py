"""Generated protobuf and gRPC code; never edited by hand."""
