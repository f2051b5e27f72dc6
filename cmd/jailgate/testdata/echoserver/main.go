// Command echoserver listens on the address in its first argument, prints
// "listening", and answers each connection's first line with its second
// argument, a colon and that line. The forwarding tests run it inside a
// jail and on the host to tell the two loopbacks apart.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
)

func main() {
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "%s:%s", os.Args[2], line)
		}()
	}
}
