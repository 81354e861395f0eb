package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the shortest RSA modulus accepted, from PEM or JWKS.
const minRSABits = 2048

// parsePublicKeyPEM reads the verification key for alg with golang-jwt's
// parsers (PKIX or certificate PEM, and PKCS #1 for RSA), then applies
// checkKeyType.
func parsePublicKeyPEM(alg, data string) (crypto.PublicKey, error) {
	var key any
	var err error
	switch alg {
	case "RS256":
		key, err = jwt.ParseRSAPublicKeyFromPEM([]byte(data))
	case "ES256":
		key, err = jwt.ParseECPublicKeyFromPEM([]byte(data))
	default:
		return nil, fmt.Errorf("auth: %s takes no public key", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %s public key: %w", alg, err)
	}
	return checkKeyType(alg, key)
}

// checkKeyType refuses a key that does not fit alg or is too weak: RS256
// needs an RSA key of at least minRSABits, ES256 a P-256 key. Every key,
// from PEM or JWKS, passes here.
func checkKeyType(alg string, key any) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("auth: an RSA key does not fit %s", alg)
		}
		if k.N.BitLen() < minRSABits {
			return nil, errors.New("auth: RSA keys shorter than 2048 bits are refused")
		}
		return k, nil
	case *ecdsa.PublicKey:
		if alg != "ES256" || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: a %s EC key does not fit %s", k.Curve.Params().Name, alg)
		}
		return k, nil
	}
	return nil, fmt.Errorf("auth: unsupported key type %T", key)
}
