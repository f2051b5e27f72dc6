//go:build !embedinit

package main

// initImage is empty in a plain go build: environments then re-execute
// this binary as their init (/proc/self/exe). make build embeds the small
// init instead (initimage_embed.go).
var initImage []byte
