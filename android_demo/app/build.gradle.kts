// The demo app: a pocketrec bundle from the app's assets, run with ONNX Runtime for Android.
//
// Project properties (-Pname=value, or gradle.properties):
//   pocketrecBundle      the bundle folder to package (default: the core's tiny test bundle)
//   pocketrecQnn         true: depend on ONNX Runtime's QNN build (Qualcomm NPU) instead of the
//                        standard one
//   pocketrecOrtVersion  ONNX Runtime version of either package
import groovy.json.JsonSlurper
import java.security.MessageDigest

plugins {
    id("com.android.application")
}

fun ortArtifact(qnn: Boolean): String =
    if (qnn) "com.microsoft.onnxruntime:onnxruntime-android-qnn" else "com.microsoft.onnxruntime:onnxruntime-android"

val useQnn: Boolean = providers.gradleProperty("pocketrecQnn").map { it.toBoolean() }.getOrElse(false)
val ortVersion: String = providers.gradleProperty("pocketrecOrtVersion").getOrElse("1.22.0")

// The bundle folder: absolute, or relative to the root project (android_demo/).
val demoRoot: File = rootProject.projectDir
val bundleFolder: Provider<File> =
    providers.gradleProperty("pocketrecBundle")
        .orElse(providers.environmentVariable("POCKETREC_BUNDLE"))
        .map { path -> File(path).let { if (it.isAbsolute) it else File(demoRoot, path) } }
val tinyBundle: Directory = rootProject.layout.projectDirectory.dir("core/src/test/resources/tiny_bundle")

android {
    namespace = "dev.pocketrec.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.pocketrec.demo"
        minSdk = 26 // java.nio.file, which the core uses to read and verify bundles
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        buildConfigField("boolean", "QNN_PACKAGE", useQnn.toString())
        buildConfigField("String", "ONNXRUNTIME_PACKAGE", "\"${ortArtifact(useQnn)}:$ortVersion\"")
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64") // phones, and the emulator
        }
    }

    buildFeatures {
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        // Graphs and tables are copied out of the APK on first start; stored uncompressed, that
        // copy is a plain read.
        noCompress += listOf("onnx", "npy", "bin")
    }

    packaging {
        jniLibs {
            // QNN's HTP backend loads its DSP libraries from the extracted native library folder.
            useLegacyPackaging = useQnn
        }
    }
}

dependencies {
    implementation(project(":core"))
    implementation("${ortArtifact(useQnn)}:$ortVersion")
}

/**
 * Copies a bundle folder into the generated assets as `bundle/`, after checking it the way the
 * core will at load time: manifest.json present, every file it lists present, inside the folder,
 * of the listed size and SHA-256. Only manifest.json and the listed files are copied.
 */
abstract class PackagePocketrecBundle : DefaultTask() {
    @get:InputDirectory
    @get:PathSensitive(PathSensitivity.RELATIVE)
    abstract val bundle: DirectoryProperty

    @get:Input
    abstract val defaultBundle: Property<Boolean>

    @get:OutputDirectory
    abstract val outputDir: DirectoryProperty

    @TaskAction
    fun copy() {
        val source = bundle.get().asFile
        if (defaultBundle.get()) {
            logger.warn(
                "pocketrec: no -PpocketrecBundle given; packaging the tiny test bundle $source " +
                    "(an untrained model; pass a bundle from `pocketrec export` for real recommendations)",
            )
        }
        val manifestFile = File(source, "manifest.json")
        if (!manifestFile.isFile) {
            throw GradleException(
                "$source is not a pocketrec bundle: it has no manifest.json " +
                    "(make one with `pocketrec export RUN_DIR --out BUNDLE_DIR`)",
            )
        }
        val manifest = JsonSlurper().parse(manifestFile) as? Map<*, *>
            ?: throw GradleException("$manifestFile must hold a JSON object")
        val files = manifest["files"] as? Map<*, *>
            ?: throw GradleException("$manifestFile has no \"files\" table of sha256 entries")
        val out = outputDir.get().asFile
        out.deleteRecursively()
        val target = File(out, "bundle")
        target.mkdirs()
        manifestFile.copyTo(File(target, "manifest.json"), overwrite = true)
        for ((key, value) in files) {
            val name = key as String
            val entry = value as? Map<*, *> ?: throw GradleException("manifest files.$name must be an object")
            val file = File(source, name)
            val copy = File(target, name)
            if (!copy.canonicalPath.startsWith(target.canonicalPath + File.separator)) {
                throw GradleException("manifest file name '$name' must be a relative path inside the bundle")
            }
            if (!file.isFile) {
                throw GradleException("bundle file $name is missing from $source; re-export the bundle")
            }
            val bytes = (entry["bytes"] as? Number)?.toLong()
            if (file.length() != bytes || sha256(file) != entry["sha256"]) {
                throw GradleException(
                    "bundle file $name does not match its sha256 in manifest.json: it was altered " +
                        "or corrupted after export; re-export the bundle",
                )
            }
            copy.parentFile.mkdirs()
            file.copyTo(copy, overwrite = true)
        }
        logger.lifecycle("pocketrec: packaged bundle '${manifest["name"]}' (${files.size} files) from $source")
    }

    private fun sha256(file: File): String {
        val digest = MessageDigest.getInstance("SHA-256")
        file.inputStream().use { input ->
            val buffer = ByteArray(1 shl 20)
            while (true) {
                val n = input.read(buffer)
                if (n < 0) break
                digest.update(buffer, 0, n)
            }
        }
        return digest.digest().joinToString("") { "%02x".format(it) }
    }
}

androidComponents {
    onVariants { variant ->
        val variantName = variant.name.replaceFirstChar { it.uppercase() }
        val packageBundle = tasks.register<PackagePocketrecBundle>("package${variantName}PocketrecBundle") {
            group = "pocketrec"
            description = "Checks the pocketrec bundle and copies it into the $variantName assets."
            bundle.set(layout.dir(bundleFolder).orElse(tinyBundle))
            defaultBundle.set(bundleFolder.map { false }.orElse(true))
        }
        variant.sources.assets?.addGeneratedSourceDirectory(packageBundle, PackagePocketrecBundle::outputDir)
    }
}
