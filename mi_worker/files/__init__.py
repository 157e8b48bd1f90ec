"""Files exchanged with the centre (issue 15): 9101 upload, 9102 download, kept under
gateway.file_directory with safe names and a sha256 each."""
