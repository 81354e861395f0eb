package devcli

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/localstack/aws/stack"
)

// capacityScale is --capacity-scale: a positive factor on DynamoDB's
// per-partition ceilings, or "off". Its scale is stack.Options'
// CapacityScale (negative: off).
type capacityScale struct{ scale float64 }

func capacityScaleFlag(fs *flag.FlagSet) *capacityScale {
	c := &capacityScale{scale: stack.DefaultCapacityScale}
	fs.Var(c, "capacity-scale", "DynamoDB's per-partition ceilings (3,000 read and 1,000 write units a second per key) times this on the keys that grow with the audience (P#, B#, Q#, R#; the others keep AWS's): 1 is AWS's, 0.01 makes this machine a scale model of audiences 100 times larger; off: no ceilings (units still counted at /_wsgate/capacity)")
	return c
}

func (c *capacityScale) String() string {
	if c == nil {
		return ""
	}
	if c.scale < 0 {
		return "off"
	}
	return strconv.FormatFloat(c.scale, 'g', -1, 64)
}

func (c *capacityScale) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		c.scale = -1
		return nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("want a positive number (1 is AWS's ceilings, 0.01 a hundredth of them) or off, not %q", s)
	}
	c.scale = v
	return nil
}
