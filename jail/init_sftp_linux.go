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
	wd, _ := os.Getwd()
	srv, err := sftp.NewServer(stdio{os.Stdin, os.Stdout}, sftp.WithServerWorkingDirectory(wd))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sftp:", err)
		os.Exit(1)
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "sftp:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
