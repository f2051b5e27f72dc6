package jail

// SFTPClientEnv names the variable, in the Env of a ProcSpec with Subsystem
// "sftp", that carries the client's SSH identification string (its whole
// version line, e.g. "SSH-2.0-AsyncSSH_2.14.2"). The jail's SFTP server
// reads SSH_FXP_SYMLINK's two paths in the order that client writes them:
// see draftOrderClients in init_sftp_symlink_linux.go. Without it the
// server reads OpenSSH's order, as OpenSSH's sftp-server does.
const SFTPClientEnv = "_JAILGATE_SFTP_CLIENT"
