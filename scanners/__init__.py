"""Where pages come from: eSCL pull, watched folder, FTP and e-mail receivers, uploads."""
