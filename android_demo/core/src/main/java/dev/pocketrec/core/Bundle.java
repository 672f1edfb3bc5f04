package dev.pocketrec.core;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * A bundle folder written by {@code pocketrec export}, opened and checked: its manifest, the
 * semantic-ID table, the catalogue and, when the bundle has one, its shared adapter. The graphs
 * stay files; a {@link ModelRunner} (ONNX Runtime in the app) loads them from {@link
 * #encoderFile} and {@link #decoderFile}.
 */
public final class Bundle {

  private final Path folder;
  private final Manifest manifest;
  private final int[][] semanticIds;
  private final Catalog catalog;
  private final CodeBiasAdapter sharedAdapter;
  private final String signedBy;

  private Bundle(
      Path folder,
      Manifest manifest,
      int[][] semanticIds,
      Catalog catalog,
      CodeBiasAdapter sharedAdapter,
      String signedBy) {
    this.folder = folder;
    this.manifest = manifest;
    this.semanticIds = semanticIds;
    this.catalog = catalog;
    this.sharedAdapter = sharedAdapter;
    this.signedBy = signedBy;
  }

  /**
   * Opens a bundle, verifying every file's size and SHA-256 first.
   *
   * @throws BundleException missing or altered files, an invalid manifest, or tables that
   *     disagree with it.
   */
  public static Bundle open(Path folder) {
    return open(folder, true);
  }

  /**
   * Opens a bundle; {@code verify = false} skips the SHA-256 check (for a copy already verified,
   * such as one the app unpacked and checked at install time).
   */
  public static Bundle open(Path folder, boolean verify) {
    return open(folder, Manifest.read(folder), verify, null);
  }

  /**
   * Opens a bundle only if one of {@code trustedKeys} signed its manifest as it is now ({@code
   * pocketrec sign}), then verifies every file against the manifest. Bundles that arrive over
   * the air (a new federated version, an update) should be opened this way.
   *
   * @throws BundleSignatureException unsigned, signed by another key, or changed after signing.
   * @throws BundleException what {@link #open(Path)} throws.
   */
  public static Bundle open(Path folder, List<BundleSignature.TrustedKey> trustedKeys) {
    byte[] data = Manifest.readBytes(folder); // parsed as checked, never read again
    String signedBy = BundleSignature.verify(folder, data, trustedKeys);
    return open(folder, Manifest.read(folder, data), true, signedBy);
  }

  private static Bundle open(Path folder, Manifest manifest, boolean verify, String signedBy) {
    if (verify) {
      manifest.verifyIntegrity(folder);
    }
    NdArray table;
    try {
      table = Npy.read(folder.resolve(manifest.semanticIds().table()));
    } catch (IOException | IllegalArgumentException e) {
      throw new BundleException(
          "cannot read the bundle's semantic-ID table " + manifest.semanticIds().table() + ": "
              + e.getMessage(), e);
    }
    Catalog catalog = Catalog.read(folder.resolve(manifest.catalog()));
    int[] shape = table.shape();
    int levels = manifest.semanticIds().numLevels();
    if (shape.length != 2
        || shape[0] != manifest.numItems()
        || shape[1] != levels
        || catalog.size() != manifest.numItems()) {
      throw new BundleException(
          "bundle tables disagree with the manifest: " + Arrays.toString(shape)
              + " semantic IDs and " + catalog.size() + " catalogue items for "
              + manifest.numItems() + " items of " + levels + " levels");
    }
    int[][] codes;
    try {
      codes = table.toIntMatrix();
    } catch (IllegalArgumentException e) {
      throw new BundleException("the semantic-ID table must hold integers: " + e.getMessage(), e);
    }
    return new Bundle(
        folder, manifest, codes, catalog, sharedAdapter(folder, manifest), signedBy);
  }

  private static CodeBiasAdapter sharedAdapter(Path folder, Manifest manifest) {
    if (manifest.adapter() == null) {
      return null;
    }
    CodeBiasAdapter shared = CodeBiasAdapter.read(folder.resolve(manifest.adapter()));
    int levels = manifest.semanticIds().numLevels();
    int codes = manifest.semanticIds().codebookSize();
    if (shared.numLevels() != levels || shared.codebookSize() != codes) {
      throw new BundleException(
          "shared adapter has shape [" + shared.numLevels() + ", " + shared.codebookSize()
              + "], expected [" + levels + ", " + codes + "]; re-export the bundle");
    }
    if (shared.model() != null && !shared.model().equals(manifest.modelId())) {
      throw new BundleException(
          "the shared adapter " + manifest.adapter() + " was published for another model than "
              + "this bundle's files; fetch the published version of this bundle again (its "
              + "adapter and files must come from the same publish)");
    }
    return shared;
  }

  /** Id of the trusted key that signed the bundle, or null when it was opened without keys. */
  public String signedBy() {
    return signedBy;
  }

  public Path folder() {
    return folder;
  }

  public Manifest manifest() {
    return manifest;
  }

  public Catalog catalog() {
    return catalog;
  }

  /** The (num_items, num_levels) semantic-ID table, row i = catalogue item i (a copy). */
  public int[][] semanticIds() {
    int[][] copy = new int[semanticIds.length][];
    for (int i = 0; i < copy.length; i++) {
      copy[i] = semanticIds[i].clone();
    }
    return copy;
  }

  /** The bundle's shared adapter (applied by default), or null when it has none. */
  public CodeBiasAdapter sharedAdapter() {
    return sharedAdapter;
  }

  /** The encoder graph for {@code provider}: its compiled version when the bundle has one. */
  public Path encoderFile(String provider) {
    return folder.resolve(manifest.encoder().fileFor(provider));
  }

  /** The decoder graph for {@code provider}: its compiled version when the bundle has one. */
  public Path decoderFile(String provider) {
    return folder.resolve(manifest.decoder().fileFor(provider));
  }

  /** The portable encoder graph. */
  public Path encoderFile() {
    return folder.resolve(manifest.encoder().file());
  }

  /** The portable decoder graph. */
  public Path decoderFile() {
    return folder.resolve(manifest.decoder().file());
  }

  /** Bytes of the two graphs on disk (the size a benchmark record reports as "graphs"). */
  public long graphBytes() {
    try {
      return Files.size(encoderFile()) + Files.size(decoderFile());
    } catch (IOException e) {
      throw new BundleException(
          "cannot read the size of the bundle's graphs: " + e.getMessage(), e);
    }
  }

  /**
   * Bytes of catalogue-sized tables (item embeddings) inside the two portable graphs, measured as
   * {@code pocketrec bench} measures them ({@link OnnxSizes}).
   */
  public long catalogueTableBytes() {
    try {
      return OnnxSizes.catalogueTableBytes(encoderFile(), manifest.numItems())
          + OnnxSizes.catalogueTableBytes(decoderFile(), manifest.numItems());
    } catch (IOException e) {
      throw new BundleException("cannot measure the bundle's graphs: " + e.getMessage(), e);
    }
  }

  /** Bytes of every non-graph file (semantic IDs, catalogue, tokenizer), from the manifest. */
  public long tableBytes() {
    long total = 0;
    for (Map.Entry<String, Manifest.FileEntry> entry : manifest.files().entrySet()) {
      if (!entry.getKey().endsWith(".onnx")) {
        total += entry.getValue().bytes();
      }
    }
    return total;
  }
}
