// Package keys loads the gateway's host key and matches tenants' public keys.
package keys
