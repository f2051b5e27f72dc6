package jail

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// sftpArg and sftpEnv mark the jail's own SFTP server: the gateway binary
// re-executed by the init (through /proc/self/exe) inside the environment,
// so file transfer works even where the rootfs has no sftp-server, with
// exactly the tenant's namespaces, ids, caps, seccomp and limits (the
// model of tailssh's beSFTP). It runs as an ordinary tenant process: she
// could exec it herself and gain nothing.
const (
	sftpArg = "sftp-server"
	sftpEnv = "_JAILGATE_SFTP=1"
)

// isSFTP reports whether this process is the jail's SFTP server.
func isSFTP() bool {
	return len(os.Args) == 2 && os.Args[1] == sftpArg && os.Getenv("_JAILGATE_SFTP") == "1"
}

// stdio joins stdin and stdout into the connection pkg/sftp serves.
type stdio struct {
	io.Reader
	io.WriteCloser
}

// sftpMain serves SFTP on stdin/stdout from the working directory (the
// tenant's home) and exits.
func sftpMain() {
	os.Unsetenv("_JAILGATE_SFTP")
	client := os.Getenv(SFTPClientEnv)
	os.Unsetenv(SFTPClientEnv)
	if err := serveSFTP(os.Stdin, os.Stdout, client); err != nil {
		fmt.Fprintln(os.Stderr, "sftp:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveSFTP serves one SFTP session on in and out for the client whose SSH
// identification is client (see SFTPClientEnv), until the client leaves.
//
// Relative paths resolve against the process's working directory, by the
// kernel: not with pkg/sftp's WithServerWorkingDirectory, which joins the
// directory to every relative path it is given through toLocalPath, the
// target of a SYMLINK included, so that "ln -s ../data link" in /root
// made a link to "/data". Without it, pkg/sftp passes both paths
// of a SYMLINK to symlink(2) as they came: a relative target stays
// byte-for-byte what the client sent, an absolute one stays absolute (in
// her root, as everything here).
func serveSFTP(in io.Reader, out io.WriteCloser, client string) error {
	if draftSymlinkOrder(client) {
		in = &draftSymlinks{r: in}
	}
	srv, err := sftp.NewServer(stdio{in, out})
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
