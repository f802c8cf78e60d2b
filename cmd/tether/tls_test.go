package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// writeCert makes a certificate for cn signed by parent (self-signed when
// parent is nil) and writes it and its key as PEM files in dir.
func writeCert(t *testing.T, dir, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  parent == nil,
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, cert, key
}

// TestMutualTLS: serve with a certificate and require client certificates;
// call with -cacert, -cert and -key.
func TestMutualTLS(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	caFile, _, ca, caKey := writeCert(t, dir, "ca", nil, nil)
	srvCert, srvKey, _, _ := writeCert(t, dir, "server", ca, caKey)
	cliCert, cliKey, _, _ := writeCert(t, dir, "client", ca, caKey)

	out, _ := background(t, "serve", "-listen", "127.0.0.1:0", "-cert", srvCert, "-key", srvKey, "-client-ca", caFile)
	addr := waitFor(t, out, `serving on tls://(\S+) `)[1]

	stdout, errOut, code := tether("call", "-cacert", caFile, "-cert", cliCert, "-key", cliKey, addr, "users.Names")
	assert.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, `["alice","bob"]`, stdout)
	// The address as tether serve prints it, with the TLS flags it needs.
	stdout, errOut, code = tether("call", "-cacert", caFile, "-cert", cliCert, "-key", cliKey, "tls://"+addr, "users.Names")
	assert.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, `["alice","bob"]`, stdout)

	_, _, code = tether("call", "-timeout", "3s", "-cacert", caFile, addr, "users.Names")
	assert.Equal(t, exitRefused, code, "no client certificate")
	_, errOut, code = tether("call", "-timeout", "3s", "-tls", addr, "users.Names")
	assert.Equal(t, exitRefused, code, "the server's CA is not trusted")
	assert.Contains(t, errOut, "certificate")
	_, errOut, code = tether("call", "-cacert", filepath.Join(dir, "missing.pem"), addr, "users.Names")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "-cacert")
}
