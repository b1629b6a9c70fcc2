package attention_test

import (
	"fmt"
	"math"
	"math/rand"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/attention"
	"github.com/gradlab/gradlab/nn"
)

// An MLA layer run two ways on the same six tokens: the training path (a Gorgonia graph with explicit keys
// and values) over the whole sequence, and the absorbed inference path, one token at a time, caching only the
// latent c_KV and the shared RoPE key per token.
func Example() {
	const T = 6
	cfg := attention.MLAConfig{Dim: 32, Heads: 4, QRank: 16, KVRank: 16, HeadDim: 8, RoPEDim: 4}
	g := G.NewGraph()
	b, err := nn.NewBuilder(g, tensor.Float64, rand.New(rand.NewSource(1)))
	if err != nil {
		panic(err)
	}
	mla, err := attention.NewMLA(b, "layers.0.attn", cfg)
	if err != nil {
		panic(err)
	}
	xv := nn.Normal(0, 1)(rand.New(rand.NewSource(2)), tensor.Float64, T, cfg.Dim)
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(T, cfg.Dim), G.WithName("x"), G.WithValue(xv))
	out, err := mla.Forward(x) // (T, d)
	if err != nil {
		panic(err)
	}
	var outVal G.Value
	G.Read(out, &outVal) // registers are reused: read through G.Read
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		panic(err)
	}
	full := outVal.Data().([]float64)

	cache, err := attention.NewMLACache[float64](mla)
	if err != nil {
		panic(err)
	}
	xs := xv.Data().([]float64)
	maxDiff := 0.0
	for t := 0; t < T; t++ {
		y, err := cache.Step(xs[t*cfg.Dim : (t+1)*cfg.Dim])
		if err != nil {
			panic(err)
		}
		for i, v := range y {
			maxDiff = math.Max(maxDiff, math.Abs(v-full[t*cfg.Dim+i]))
		}
	}
	mha := attention.MHAConfig{Dim: 32, Heads: 4, HeadDim: 8}
	fmt.Println("parameters:", mla.ParamCount(), "first:", mla.Params()[0].Name())
	fmt.Printf("cache: %d tokens, %d values per token (MHA: %d), %d bytes\n",
		cache.Len(), cache.ValuesPerToken(), mha.CacheValuesPerToken(), cache.Bytes())
	fmt.Println("absorbed = training path:", maxDiff < 1e-9)
	// Output:
	// parameters: 4000 first: layers.0.attn.wq_a.weight
	// cache: 6 tokens, 20 values per token (MHA: 64), 960 bytes
	// absorbed = training path: true
}
