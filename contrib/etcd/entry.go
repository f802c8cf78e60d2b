package etcd

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tether-go/tether/remote"
)

// ErrBadEntry reports a value under the prefix that is not an endpoint:
// not JSON, or without a network or an address.
var ErrBadEntry = errors.New("tether/etcd: the entry is not an endpoint")

// entry is an endpoint as it is stored in etcd.
type entry struct {
	Network string            `json:"network"`
	Addr    string            `json:"addr"`
	ID      string            `json:"id,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// encodeEntry returns the value announcing ep.
func encodeEntry(ep remote.Endpoint) (string, error) {
	b, err := json.Marshal(entry{Network: ep.Network, Addr: ep.Addr, ID: ep.ID, Attrs: ep.Attrs})
	return string(b), err
}

// decodeEntry reads the value of key as an endpoint; a value that is not
// one is an error matching ErrBadEntry that names the key.
func decodeEntry(key string, value []byte) (remote.Endpoint, error) {
	var e entry
	if err := json.Unmarshal(value, &e); err != nil {
		return remote.Endpoint{}, fmt.Errorf("%w: key %q: %w", ErrBadEntry, key, err)
	}
	if e.Network == "" || e.Addr == "" {
		return remote.Endpoint{}, fmt.Errorf("%w: key %q: %q has no network or no address", ErrBadEntry, key, value)
	}
	return remote.Endpoint{Network: e.Network, Addr: e.Addr, ID: e.ID, Attrs: e.Attrs}, nil
}

// endpointID is the ID a resolver gives ep: its own, or Network://Addr.
func endpointID(ep remote.Endpoint) string {
	if ep.ID != "" {
		return ep.ID
	}
	return ep.Network + "://" + ep.Addr
}
