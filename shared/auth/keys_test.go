package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pkixPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func certPEM(t *testing.T, priv *ecdsa.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestNewVerifier_PublicKeyPEMMustFitTheAlgorithm(t *testing.T) {
	strong, strongPEM := rsaKey(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&strong.PublicKey)}))

	cases := []struct {
		name string
		alg  string
		pem  string
		ok   bool
	}{
		{"RSA 2048 PKIX", "RS256", strongPEM, true},
		{"RSA 2048 PKCS #1", "RS256", pkcs1, true},
		{"RSA 1024", "RS256", pkixPEM(t, &weak.PublicKey), false},
		{"EC key for RS256", "RS256", pkixPEM(t, &p256.PublicKey), false},
		{"P-256 PKIX", "ES256", pkixPEM(t, &p256.PublicKey), true},
		{"P-256 certificate", "ES256", certPEM(t, p256), true},
		{"P-384 for ES256", "ES256", pkixPEM(t, &p384.PublicKey), false},
		{"P-384 certificate for ES256", "ES256", certPEM(t, p384), false},
		{"RSA key for ES256", "ES256", strongPEM, false},
		{"not PEM", "RS256", "not a key", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewVerifier(VerifierConfig{Alg: c.alg, PublicKeyPEM: c.pem})
			if c.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}
