package nn

import (
	"math/rand"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// Builder creates the parameter nodes of a model in one graph, with one dtype, drawing every initial value
// from one explicitly seeded RNG (Gorgonia's initialisers seed from the clock). It refuses a name that is
// already taken in the graph: Gorgonia deduplicates unnamed inputs of equal shape into one node, and gradlab's
// solvers key their state by name, so every parameter needs a unique name. Parameters are recorded in the
// order they are created.
type Builder struct {
	g      *G.ExprGraph
	dt     tensor.Dtype
	rng    *rand.Rand
	params G.Nodes
	names  map[string]bool
}

// NewBuilder returns a Builder over g with dtype dt (float32 or float64) and the random source rng
// (for example rand.New(rand.NewSource(seed))).
func NewBuilder(g *G.ExprGraph, dt tensor.Dtype, rng *rand.Rand) (*Builder, error) {
	if g == nil {
		return nil, errors.New("nn: nil graph")
	}
	if rng == nil {
		return nil, errors.New("nn: nil RNG: pass rand.New(rand.NewSource(seed))")
	}
	if err := graphop.CheckFloat(dt); err != nil {
		return nil, errors.Wrap(err, "nn")
	}
	return &Builder{g: g, dt: dt, rng: rng, names: map[string]bool{}}, nil
}

// Graph returns the graph the Builder adds nodes to.
func (b *Builder) Graph() *G.ExprGraph { return b.g }

// Dtype returns the dtype of every parameter the Builder creates.
func (b *Builder) Dtype() tensor.Dtype { return b.dt }

// RNG returns the Builder's random source.
func (b *Builder) RNG() *rand.Rand { return b.rng }

// Params returns every parameter created so far, in creation order.
func (b *Builder) Params() G.Nodes { return append(G.Nodes(nil), b.params...) }

// Param creates a parameter node called name with the given shape, its value drawn by init from the
// Builder's RNG. The name must be non-empty and unused in the graph.
func (b *Builder) Param(name string, init Init, shape ...int) (*G.Node, error) {
	if name == "" {
		return nil, errors.New("nn: a parameter needs a name")
	}
	if b.names[name] || len(b.g.ByName(name)) > 0 {
		return nil, errors.Errorf("nn: parameter name %q is already used in the graph", name)
	}
	for _, s := range shape {
		if s <= 0 {
			return nil, errors.Errorf("nn: parameter %q: bad shape %v", name, shape)
		}
	}
	if init == nil {
		return nil, errors.Errorf("nn: parameter %q: nil initialiser", name)
	}
	v := init(b.rng, b.dt, shape...)
	var n *G.Node
	switch len(shape) {
	case 0:
		return nil, errors.Errorf("nn: parameter %q: scalar parameters are not supported", name)
	case 1:
		n = G.NewVector(b.g, b.dt, G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	case 2:
		n = G.NewMatrix(b.g, b.dt, G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	default:
		n = G.NewTensor(b.g, b.dt, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	}
	b.names[name] = true
	b.params = append(b.params, n)
	return n, nil
}

// Option configures a layer. Each constructor documents the options it reads; the others are ignored.
type Option func(*options)

type options struct {
	init, biasInit Init
	bias           bool
	eps            float64
	hidden         int
	multipleOf     int
}

func collect(opts []Option, o options) options {
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithInit sets the initialiser of a layer's main weight.
func WithInit(i Init) Option { return func(o *options) { o.init = i } }

// WithBias adds (true) or removes (false) a Linear layer's bias.
func WithBias(on bool) Option { return func(o *options) { o.bias = on } }

// WithBiasInit sets the initialiser of a Linear layer's bias (and turns the bias on).
func WithBiasInit(i Init) Option { return func(o *options) { o.biasInit = i; o.bias = true } }

// WithEps sets RMSNorm's ε (default DefaultEps).
func WithEps(eps float64) Option { return func(o *options) { o.eps = eps } }

// WithHidden sets SwiGLU's hidden width d_ff (default DefaultHidden(d, 64)).
func WithHidden(dff int) Option { return func(o *options) { o.hidden = dff } }

// WithMultipleOf sets the multiple that SwiGLU's default hidden width is rounded up to (default 64).
func WithMultipleOf(m int) Option { return func(o *options) { o.multipleOf = m } }
