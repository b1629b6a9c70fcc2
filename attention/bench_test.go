package attention

import (
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/nn"
)

// Decoding 256 tokens through one layer with its cache (d = 128, 4 heads of 32): MHA against MLA with
// d_c = 64, d_h^R = 16 (REFERENCE §2.7's small CPU model; 256 against 80 cached values per token).
func BenchmarkDecode256(b *testing.B) {
	const d, T = 128, 256
	for _, sp := range []spec{
		mhaSpec("MHA", MHAConfig{Dim: d, Heads: 4, HeadDim: 32, MaxPos: T}),
		mlaSpec("MLA", MLAConfig{Dim: d, Heads: 4, KVRank: 64, HeadDim: 32, RoPEDim: 16, MaxPos: T}),
	} {
		b.Run(sp.name, func(b *testing.B) {
			g := G.NewGraph()
			bl, _ := nn.NewBuilder(g, tensor.Float32, rand.New(rand.NewSource(1)))
			l, err := sp.mk(bl)
			if err != nil {
				b.Fatal(err)
			}
			xs := randT(rand.New(rand.NewSource(2)), tensor.Float32, 1, T, d).Data().([]float32)
			var c Cache[float32]
			switch m := l.(type) {
			case *MHA:
				c, _ = NewMHACache[float32](m)
			case *MLA:
				c, _ = NewMLACache[float32](m)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Reset()
				for t := 0; t < T; t++ {
					if _, err := c.Step(xs[t*d : (t+1)*d]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*T)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(c.Bytes())/T, "cacheB/token")
		})
	}
}
