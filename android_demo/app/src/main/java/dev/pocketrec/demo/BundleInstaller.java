package dev.pocketrec.demo;

import android.content.Context;
import android.content.res.AssetManager;
import dev.pocketrec.core.Bundle;
import dev.pocketrec.core.BundleException;
import dev.pocketrec.core.Json;
import dev.pocketrec.core.Manifest;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;

/**
 * Puts the bundle packaged in the APK's assets ({@code assets/bundle/}) into the app's private
 * files, where ONNX Runtime can load the graphs by path, and opens it with the core, which checks
 * every file against the SHA-256 in its manifest.
 *
 * <p>The copy is made once per bundle: when the installed manifest.json equals the packaged one,
 * the files are reused (and still verified when opened; a copy that fails is made again).
 */
final class BundleInstaller {

  /** The folder inside the assets that holds the bundle (see app/build.gradle.kts). */
  static final String ASSET_FOLDER = "bundle";

  private static Bundle opened; // verified once per process

  private BundleInstaller() {}

  /**
   * The packaged bundle, installed and verified.
   *
   * @throws BundleException if the APK has no bundle, or a file is missing or altered.
   */
  static synchronized Bundle open(Context context) {
    if (opened == null) {
      try {
        opened = Bundle.open(install(context, false)); // verifies size and SHA-256 of every file
      } catch (BundleException damaged) {
        // The installed copy may have been damaged since: copy it from the APK once more. A
        // bundle that was altered before packaging fails again, and that error is reported.
        opened = Bundle.open(install(context, true));
      }
    }
    return opened;
  }

  private static Path install(Context context, boolean fresh) {
    AssetManager assets = context.getAssets();
    Path target = context.getFilesDir().toPath().resolve(ASSET_FOLDER);
    byte[] packaged;
    try {
      packaged = read(assets, ASSET_FOLDER + "/manifest.json");
    } catch (IOException e) {
      throw new BundleException(
          "this APK has no pocketrec bundle (assets/bundle/manifest.json); build it with "
              + "-PpocketrecBundle=/path/to/bundle",
          e);
    }
    Manifest manifest;
    try {
      manifest = Manifest.parse(Json.parse(new String(packaged, StandardCharsets.UTF_8)));
    } catch (IllegalArgumentException e) {
      throw new BundleException("the packaged manifest.json is not valid JSON: " + e.getMessage());
    }
    Path installedManifest = target.resolve("manifest.json");
    try {
      if (!fresh
          && Files.isRegularFile(installedManifest)
          && Arrays.equals(Files.readAllBytes(installedManifest), packaged)) {
        return target; // installed before; Bundle.open checks the files are still intact
      }
      Path staging = context.getFilesDir().toPath().resolve(ASSET_FOLDER + ".partial");
      deleteTree(staging);
      Files.createDirectories(staging);
      for (String name : manifest.files().keySet()) {
        Path file = staging.resolve(name);
        Files.createDirectories(file.getParent());
        try (InputStream in = assets.open(ASSET_FOLDER + "/" + name);
            OutputStream out = Files.newOutputStream(file)) {
          copy(in, out);
        }
      }
      Files.write(staging.resolve("manifest.json"), packaged); // last: marks a complete copy
      deleteTree(target);
      Files.move(staging, target, StandardCopyOption.ATOMIC_MOVE);
      return target;
    } catch (IOException e) {
      throw new BundleException(
          "cannot install the packaged bundle into " + target + ": " + e.getMessage(), e);
    }
  }

  private static byte[] read(AssetManager assets, String name) throws IOException {
    try (InputStream in = assets.open(name)) {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      copy(in, out);
      return out.toByteArray();
    }
  }

  private static void copy(InputStream in, OutputStream out) throws IOException {
    byte[] buffer = new byte[1 << 16];
    for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
      out.write(buffer, 0, n);
    }
  }

  private static void deleteTree(Path root) throws IOException {
    if (!Files.exists(root)) {
      return;
    }
    try (java.util.stream.Stream<Path> paths = Files.walk(root)) {
      Path[] all = paths.sorted((a, b) -> b.getNameCount() - a.getNameCount()).toArray(Path[]::new);
      for (Path path : all) {
        Files.delete(path);
      }
    }
  }
}
