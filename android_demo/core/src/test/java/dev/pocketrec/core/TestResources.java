package dev.pocketrec.core;

import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** The test resources folder (tiny bundle, golden traces) and copies of it to tamper with. */
final class TestResources {

  static final String TRACE_SUFFIX = "_trace.json.gz";

  private TestResources() {}

  /** The folder that holds tiny_bundle/ and the traces, found through the class path. */
  static Path dir() {
    URL anchor = TestResources.class.getClassLoader().getResource("tiny_bundle/manifest.json");
    if (anchor == null) {
      throw new IllegalStateException(
          "tiny_bundle/manifest.json is not on the test class path; add src/test/resources");
    }
    try {
      return Paths.get(anchor.toURI()).getParent().getParent();
    } catch (URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  static Path tinyBundle() {
    return dir().resolve("tiny_bundle");
  }

  /** Every {@code *_trace.json.gz}, sorted by name. */
  static List<Path> traces() throws IOException {
    List<Path> found = new ArrayList<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir(), "*" + TRACE_SUFFIX)) {
      for (Path file : files) {
        found.add(file);
      }
    }
    Collections.sort(found);
    return found;
  }

  /** A trace's name: {@code tiny} for {@code tiny_trace.json.gz}. */
  static String traceName(Path trace) {
    String file = trace.getFileName().toString();
    return file.substring(0, file.length() - TRACE_SUFFIX.length());
  }

  /** Copies a bundle folder (flat) into {@code target}. */
  static Path copyBundle(Path source, Path target) throws IOException {
    Files.createDirectories(target);
    try (DirectoryStream<Path> files = Files.newDirectoryStream(source)) {
      for (Path file : files) {
        Files.copy(file, target.resolve(file.getFileName()), StandardCopyOption.REPLACE_EXISTING);
      }
    }
    return target;
  }
}
