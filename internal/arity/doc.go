// Package arity words how many arguments a method takes, once for every
// side that checks a call (the broker, the gateway, the command), so that
// all of them say it the same way.
package arity
