/**
 * The pocketrec on-device core: everything between a bundle folder and a list of
 * recommendations, except running the graphs.
 *
 * <p>It reads and verifies bundles ({@link dev.pocketrec.core.Bundle}, {@link
 * dev.pocketrec.core.Manifest}), indexes semantic IDs ({@link dev.pocketrec.core.PrefixIndex}),
 * runs constrained beam search ({@link dev.pocketrec.core.BeamSearch}) and serves requests
 * ({@link dev.pocketrec.core.Recommender}) exactly as the Python SDK does. The graphs run behind
 * {@link dev.pocketrec.core.ModelRunner}: ONNX Runtime in the Android app, recorded outputs in
 * the conformance tests. Around them: the provider choice with fallback ({@link
 * dev.pocketrec.core.ProviderFallback}), personalization adapters ({@link
 * dev.pocketrec.core.CodeBiasAdapter}) and {@code pocketrec-bench/1} measurements ({@link
 * dev.pocketrec.core.Benchmark}, {@link dev.pocketrec.core.BenchRecord}). The package has no
 * dependencies beyond the Java 17 language and the parts of the Java library that Android (API
 * 26+) provides.
 */
package dev.pocketrec.core;
