// Command initbin is an environment's init on its own: only the jail
// package, so that it starts faster and holds less memory than the whole
// gateway would. make build compiles it and embeds it in jailgate (tag
// embedinit), which runs it from a sealed memfd (jail.SealedInit); it is
// never installed or run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/jailgate/jailgate/jail"
)

func main() {
	if jail.IsInit() {
		jail.InitMain()
	}
	fmt.Fprintln(os.Stderr, "this is jailgate's environment init, started by jailgate serve; it is not run by hand")
	os.Exit(2)
}
