// Command agentlist is a tiny ssh-add -l for the tests' jails, which have
// no ssh-add: it lists the keys of the agent at $SSH_AUTH_SOCK (SHA256
// fingerprint and comment, one per line), then has the first one sign a
// message and checks the signature, printing "signed ok".
package main

import (
	"fmt"
	"net"
	"os"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func main() {
	c, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentlist:", err)
		os.Exit(2)
	}
	defer c.Close()
	a := agent.NewClient(c)
	keys, err := a.List()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentlist: list:", err)
		os.Exit(2)
	}
	for _, k := range keys {
		fmt.Println(gossh.FingerprintSHA256(k), k.Comment)
	}
	if len(keys) == 0 {
		fmt.Println("no identities")
		os.Exit(1)
	}
	msg := []byte("jailgate agent test")
	sig, err := a.Sign(keys[0], msg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentlist: sign:", err)
		os.Exit(2)
	}
	if err := keys[0].Verify(msg, sig); err != nil {
		fmt.Fprintln(os.Stderr, "agentlist: verify:", err)
		os.Exit(2)
	}
	fmt.Println("signed ok")
}
