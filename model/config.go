package model

import (
	"fmt"
	"math"

	"github.com/pkg/errors"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/attention"
	"github.com/gradlab/gradlab/data"
	"github.com/gradlab/gradlab/moe"
	"github.com/gradlab/gradlab/nn"
)

// AttentionKind selects the attention layer of every block.
type AttentionKind int

const (
	// MHA is causal multi-head attention with RoPE (attention.MHA). With Config.KVHeads set it is GQA.
	MHA AttentionKind = iota
	// GQA is grouped-query attention: attention.MHA with Config.KVHeads key/value heads (required).
	GQA
	// MLA is DeepSeek-V2's multi-head latent attention (attention.MLA), sized by Config.MLA.
	MLA
)

func (k AttentionKind) String() string {
	switch k {
	case MHA:
		return "mha"
	case GQA:
		return "gqa"
	case MLA:
		return "mla"
	}
	return fmt.Sprintf("AttentionKind(%d)", int(k))
}

// FFNKind selects the feed-forward layer of every block.
type FFNKind int

const (
	// SwiGLU is the dense gated feed-forward block (nn.SwiGLU) of width Config.Hidden.
	SwiGLU FFNKind = iota
	// MoE is a Mixture-of-Experts layer (moe.Layer) configured by Config.MoE.
	MoE
)

func (k FFNKind) String() string {
	switch k {
	case SwiGLU:
		return "swiglu"
	case MoE:
		return "moe"
	}
	return fmt.Sprintf("FFNKind(%d)", int(k))
}

// MLADims sizes MLA (see attention.MLAConfig; the per-head width d_h is Config.HeadDim).
type MLADims struct {
	// QRank is d′_c, the query compression rank (0: a plain query projection).
	QRank int
	// KVRank is d_c, the width of the cached latent (required for MLA).
	KVRank int
	// RoPEDim is d_h^R, the width of the decoupled rotary query/key (required for MLA, even).
	RoPEDim int
	// VHeadDim is the per-head value width (0: HeadDim).
	VHeadDim int
}

// Config describes a decoder-only language model. Zero values select the documented defaults; Dim, Layers
// and Heads are required.
type Config struct {
	// Vocab is the vocabulary size (default data.ByteVocabSize = 256, byte-level tokens).
	Vocab int
	// Dim is the model width d.
	Dim int
	// Layers is the number of decoder blocks.
	Layers int
	// Heads is the number of attention (query) heads n_h.
	Heads int
	// HeadDim is d_h, the per-head width of queries and keys (MLA: of the compressed, non-rotary part).
	// 0 means Dim/Heads.
	HeadDim int
	// KVHeads is the number of key/value heads for GQA (0: Heads, plain MHA).
	KVHeads int
	// Context is the training sequence length T (default 64).
	Context int
	// MaxPos is the length of the RoPE tables, the longest sequence generation can reach (default
	// max(Context, attention.DefaultMaxPos)).
	MaxPos int

	// Attention selects MHA, GQA or MLA.
	Attention AttentionKind
	// MLA sizes the latent attention (Attention = MLA only).
	MLA MLADims

	// FFN selects the dense SwiGLU block or a Mixture-of-Experts layer.
	FFN FFNKind
	// Hidden is SwiGLU's d_ff (default nn.DefaultHidden(Dim, 64); FFN = SwiGLU only).
	Hidden int
	// MoE configures the MoE layers (FFN = MoE only); its Dim is set to Dim, its Init defaults to Init.
	MoE moe.Config

	// TieEmbeddings uses the embedding table as the output head (logits = h·Eᵀ, Press & Wolf 2017) instead of
	// a separate "head.weight".
	TieEmbeddings bool
	// Eps is the ε of every RMSNorm (blocks, final norm, MLA's latent norms); 0 means nn.DefaultEps.
	Eps float64
	// RoPEBase is RoPE's θ (0: 10000); Pairing its pairing (zero value: interleaved).
	RoPEBase float64
	Pairing  nn.Pairing

	// EmbedStd is the standard deviation of the embedding's normal initialisation. 0 means 1 (PyTorch's
	// nn.Embedding) for an untied table and 1/√Dim for a tied one (so that the initial logits have unit
	// scale).
	EmbedStd float64
	// Init initialises the hidden matrices (attention, FFN, experts, head); nil means nn.Linear's default
	// U(±1/√fan_in).
	Init nn.Init

	// Dtype is the graph's float type: tensor.Float32 (the zero value's default) or tensor.Float64.
	Dtype tensor.Dtype
	// Seed seeds every initial value.
	Seed int64
}

// withDefaults fills in the defaults and validates the configuration.
func (c Config) withDefaults() (Config, error) {
	if c.Vocab == 0 {
		c.Vocab = data.ByteVocabSize
	}
	if c.Context == 0 {
		c.Context = 64
	}
	if c.Heads > 0 && c.HeadDim == 0 {
		c.HeadDim = c.Dim / c.Heads
	}
	if c.MaxPos == 0 {
		c.MaxPos = max(c.Context, attention.DefaultMaxPos)
	}
	if c.Eps == 0 {
		c.Eps = nn.DefaultEps
	}
	if c.Dtype == (tensor.Dtype{}) {
		c.Dtype = tensor.Float32
	}
	if c.FFN == SwiGLU && c.Hidden == 0 && c.Dim > 0 {
		c.Hidden = nn.DefaultHidden(c.Dim, 64)
	}
	if c.FFN == MoE {
		c.MoE.Dim = c.Dim
		if c.MoE.Init == nil {
			c.MoE.Init = c.Init
		}
	}
	if c.EmbedStd == 0 {
		c.EmbedStd = 1
		if c.TieEmbeddings && c.Dim > 0 {
			c.EmbedStd = 1 / math.Sqrt(float64(c.Dim))
		}
	}
	switch {
	case c.Vocab <= 0 || c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.HeadDim <= 0:
		return c, errors.Errorf("model: bad sizes vocab=%d d=%d layers=%d heads=%d head dim=%d",
			c.Vocab, c.Dim, c.Layers, c.Heads, c.HeadDim)
	case c.Context < 2:
		return c, errors.Errorf("model: context %d < 2", c.Context)
	case c.MaxPos < c.Context:
		return c, errors.Errorf("model: MaxPos %d shorter than the context %d", c.MaxPos, c.Context)
	case c.Dtype != tensor.Float32 && c.Dtype != tensor.Float64:
		return c, errors.Errorf("model: dtype %v (want float32 or float64)", c.Dtype)
	case c.Eps < 0 || math.IsNaN(c.Eps) || c.EmbedStd < 0 || math.IsNaN(c.EmbedStd):
		return c, errors.Errorf("model: bad eps %v or embedding std %v", c.Eps, c.EmbedStd)
	}
	switch c.Attention {
	case MHA:
	case GQA:
		if c.KVHeads <= 0 {
			return c, errors.New("model: GQA needs KVHeads")
		}
	case MLA:
		if c.MLA.KVRank <= 0 || c.MLA.RoPEDim <= 0 {
			return c, errors.Errorf("model: MLA needs KVRank and RoPEDim, got %+v", c.MLA)
		}
	default:
		return c, errors.Errorf("model: unknown attention %v", c.Attention)
	}
	switch c.FFN {
	case SwiGLU:
		if c.Hidden <= 0 {
			return c, errors.Errorf("model: bad SwiGLU hidden width %d", c.Hidden)
		}
	case MoE:
		if c.MoE.CapacityFactor > 0 {
			// Dropping depends on the whole batch: cached decoding (one token at a time) could not match it.
			return c, errors.New("model: MoE capacity limits are not supported (token dropping depends on the batch)")
		}
	default:
		return c, errors.Errorf("model: unknown FFN %v", c.FFN)
	}
	return c, nil
}

func (c Config) mhaConfig() attention.MHAConfig {
	return attention.MHAConfig{Dim: c.Dim, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		MaxPos: c.MaxPos, RoPEBase: c.RoPEBase, Pairing: c.Pairing, Init: c.Init}
}

func (c Config) mlaConfig() attention.MLAConfig {
	return attention.MLAConfig{Dim: c.Dim, Heads: c.Heads, QRank: c.MLA.QRank, KVRank: c.MLA.KVRank,
		HeadDim: c.HeadDim, RoPEDim: c.MLA.RoPEDim, VHeadDim: c.MLA.VHeadDim, MaxPos: c.MaxPos,
		RoPEBase: c.RoPEBase, Pairing: c.Pairing, Eps: c.Eps, Init: c.Init}
}
