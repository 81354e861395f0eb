package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"

	"github.com/wsgate/wsgate/shared/store"
)

// maxCursorChars bounds a cursor a client sends back: a sealed store
// cursor (a connection id, at most 256 bytes) in base64.
const maxCursorChars = 512

// errCursor is the answer to a cursor this gateway did not give.
var errCursor = errors.New("the cursor is not one this gateway gave for this topic")

// cursorSeal makes presence cursors opaque: the store's cursor is the last
// listed subscription's connection id (another principal's, which a client
// must not learn), so the gateway hands it out sealed with AES-256-GCM under
// a key derived from the deployment's secret, bound to the topic. A client
// can neither read one nor make one up: a changed byte fails to open.
type cursorSeal struct{ aead cipher.AEAD }

// newCursorSeal derives the sealing key from secret (WSGATE_CURSOR_KEY or
// the HMAC token secret). Without one, cursors are sealed with a random
// key and hold only within this instance: config refuses presence topics
// without a secret, so no deployment that lists presence gets here.
func newCursorSeal(secret []byte) cursorSeal {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("wsgate presence cursor v1"))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return cursorSeal{} // a 32-byte key never fails; seal then gives none
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return cursorSeal{}
	}
	return cursorSeal{aead: aead}
}

// seal returns the cursor a client gets for next on topic.
func (c cursorSeal) seal(topic string, next store.Cursor) string {
	if c.aead == nil || next == "" {
		return ""
	}
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(next)+c.aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(c.aead.Seal(nonce, nonce, []byte(next), []byte(topic)))
}

// open returns the store cursor a client's cursor for topic stands for
// ("" for none), or errCursor.
func (c cursorSeal) open(topic, cursor string) (store.Cursor, error) {
	if cursor == "" {
		return "", nil
	}
	if c.aead == nil || len(cursor) > maxCursorChars {
		return "", errCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	n := c.aead.NonceSize()
	if err != nil || len(b) < n+c.aead.Overhead() {
		return "", errCursor
	}
	plain, err := c.aead.Open(nil, b[:n], b[n:], []byte(topic))
	if err != nil || len(plain) == 0 {
		return "", errCursor
	}
	return store.Cursor(plain), nil
}
