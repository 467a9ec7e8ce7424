#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the kmm.sigs.x-k8s.io CRDs of deploy/crd/ from the schema below.

The schema follows upstream KMM's API (field names, types, defaults, required
fields, the CEL rule, scopes, short names, status subresources), plus kmm's
additions: printer columns and Module status.conditions.

    deploy/crd/generate.py           rewrite the YAML files
    deploy/crd/generate.py --check   exit 1 if a committed file differs
"""
import json
import os
import re
import sys

GROUP = "kmm.sigs.x-k8s.io"
HERE = os.path.dirname(os.path.abspath(__file__))


# --- schema building blocks -------------------------------------------------

def s(desc=None, **kw):
    d = {"type": "string"}
    if desc:
        d["description"] = desc
    d.update(kw)
    return d


def b(desc=None):
    d = {"type": "boolean"}
    if desc:
        d["description"] = desc
    return d


def i32(desc=None):
    d = {"type": "integer", "format": "int32"}
    if desc:
        d["description"] = desc
    return d


def i64(desc=None):
    d = {"type": "integer"}
    if desc:
        d["description"] = desc
    return d


def obj(props, required=None, desc=None, **kw):
    d = {"type": "object"}
    if desc:
        d["description"] = desc
    d["properties"] = props
    if required:
        d["required"] = required
    d.update(kw)
    return d


def arr(items, desc=None, **kw):
    d = {"type": "array"}
    if desc:
        d["description"] = desc
    d["items"] = items
    d.update(kw)
    return d


def strmap(desc=None):
    d = {"type": "object", "additionalProperties": {"type": "string"}}
    if desc:
        d["description"] = desc
    return d


def passthrough(kind="object", desc=None):
    """An embedded core type kmm passes through unchanged."""
    if kind == "array":
        return arr({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, desc)
    d = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if desc:
        d["description"] = desc
    return d


def local_ref(desc=None):
    return obj({"name": s("Name of the referent.", default="")}, desc=desc,
               **{"x-kubernetes-map-type": "atomic"})


def tls(desc):
    return obj({
        "insecure": b("Use plain HTTP to reach the registry."),
        "insecureSkipTLSVerify": b("Do not verify the registry's TLS certificate."),
    }, desc=desc)


TOLERATION = obj({
    "key": s("Taint key the toleration applies to; empty matches all keys (operator must be Exists)."),
    "operator": s("Exists or Equal (default Equal)."),
    "value": s("Taint value the toleration matches (Equal)."),
    "effect": s("NoSchedule, PreferNoSchedule or NoExecute; empty matches all effects."),
    "tolerationSeconds": i64("How long a NoExecute taint is tolerated."),
})

TOLERATIONS = arr(TOLERATION, "Tolerations added to the pods KMM creates for this Module.")

# Neither list is required (upstream's fields are omitempty); a list given has an item.
MODPROBE_ARGS = obj({
    "load": arr(s(), "Arguments for loading.", minItems=1),
    "unload": arr(s(), "Arguments for unloading.", minItems=1),
})

MODPROBE = obj({
    "moduleName": s("Module to load; may be empty only when rawArgs.load and rawArgs.unload are set."),
    "dirName": s("Module root inside the kmod image; files live in <dirName>/lib/modules/<kernel>/.",
                 default="/opt"),
    "parameters": arr(s(), "key=value parameters appended after the module name on load."),
    "args": dict(MODPROBE_ARGS, description="Extra modprobe flags inserted before the module name."),
    "rawArgs": dict(MODPROBE_ARGS,
                    description="Passed verbatim to modprobe; everything else (dirName included) is ignored."),
    "firmwarePath": s("Directory in the kmod image whose contents are copied to the node firmware directory."),
    "modulesLoadingOrder": arr(s(), "Soft-dependency chain, upmost first; the first entry must be moduleName."),
}, desc="How the worker runs modprobe.")

BUILD_ARG = obj({"name": s(), "value": s()}, required=["name", "value"])

BUILD = obj({
    "dockerfileConfigMap": local_ref("ConfigMap whose key `dockerfile` holds the Dockerfile."),
    "buildArgs": arr(BUILD_ARG, "Build arguments; mapping-level values override module-level ones by name."),
    "secrets": arr(local_ref(), "Secrets mounted read-only at /run/secrets/<name> in the build pod."),
    "baseImageRegistryTLS": tls("TLS options for pulling the base images (FROM)."),
    "kanikoParams": obj({"tag": s("Tag of the kaniko image to use (e.g. debug).")}),
    "selector": strmap("Node selector for the build pod."),
}, required=["dockerfileConfigMap"], desc="In-cluster build of the kmod image.")

SIGN = obj({
    "unsignedImage": s("Image holding the unsigned modules (ignored when a build is configured); templated."),
    "unsignedImageRegistryTLS": tls("TLS options for pulling the unsigned image."),
    "keySecret": local_ref("Secret whose key `key` holds the private signing key."),
    "certSecret": local_ref("Secret whose key `cert` holds the public certificate."),
    "filesToSign": arr(s(), "Files (or globs) to sign, under <dirName>/; templated."),
}, required=["keySecret", "certSecret"], desc="Signing of the modules in the kmod image.")

IN_TREE_LIST = arr(s(), "In-tree modules removed (modprobe -r) before loading.")
IN_TREE_ONE = s("Deprecated: use inTreeModulesToRemove.")

KERNEL_MAPPING = obj({
    "literal": s("Exact node kernel version (trailing + trimmed)."),
    "regexp": s("Go RE2 regular expression, matched unanchored against the kernel version."),
    "containerImage": s("kmod image for this mapping (templated); empty uses the container-level image."),
    "build": BUILD,
    "sign": SIGN,
    "registryTLS": tls("Overrides the container-level registryTLS."),
    "inTreeModulesToRemove": IN_TREE_LIST,
    "inTreeModuleToRemove": IN_TREE_ONE,
}, required=["containerImage"])

ML_CONTAINER = obj({
    "modprobe": MODPROBE,
    "kernelMappings": arr(KERNEL_MAPPING, "First matching mapping wins.", minItems=1),
    "containerImage": s("Default kmod image for mappings that leave theirs empty; templated."),
    "imagePullPolicy": s("Pull policy of the kmod image.", enum=["Always", "IfNotPresent", "Never"]),
    "build": BUILD,
    "sign": SIGN,
    "registryTLS": tls("TLS options for the kmod image registry."),
    "version": s("Enables ordered upgrades; cannot be switched between empty and set."),
    "inTreeModulesToRemove": IN_TREE_LIST,
    "inTreeModuleToRemove": IN_TREE_ONE,
}, required=["kernelMappings", "modprobe"])

CONTAINER_SPEC = obj({
    "image": s("Container image."),
    "command": arr(s()),
    "args": arr(s()),
    "env": passthrough("array", "Environment variables (core/v1 EnvVar)."),
    "imagePullPolicy": s(enum=["Always", "IfNotPresent", "Never"]),
    "resources": passthrough("object", "core/v1 ResourceRequirements."),
    "volumeMounts": passthrough("array", "core/v1 VolumeMount, appended to KMM's."),
}, required=["image"])

PLUGIN_COMMON = {
    "container": CONTAINER_SPEC,
    "initContainer": CONTAINER_SPEC,
    "serviceAccountName": s(),
    "volumes": passthrough("array", "core/v1 Volume; hostPath only under /dev, /sys, /var, /opt or /run."),
    "automountServiceAccountToken": b(),
}

DEVICE_PLUGIN = obj(dict(PLUGIN_COMMON), required=["container"], desc="Device plugin DaemonSet.")

DRA = obj(dict(PLUGIN_COMMON, **{
    "driverName": s("DRA driver name (DNS-1123 subdomain)."),
    "deviceClasses": arr(obj({
        "name": s(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        "selectors": passthrough("array", "resource.k8s.io/v1 DeviceSelector.") | {"maxItems": 32},
        "config": passthrough("array", "resource.k8s.io/v1 DeviceClassConfiguration.") | {"maxItems": 32},
    }, required=["name"])),
}), required=["container", "driverName"], desc="DRA driver DaemonSet and DeviceClasses (Kubernetes 1.34+).")

DS_STATUS = obj({
    "nodesMatchingSelectorNumber": i32("Schedulable nodes matching the selector."),
    "desiredNumber": i32("Nodes that should run it."),
    "availableNumber": i32("Nodes where it is available."),
})

CONDITION = obj({
    "type": s(maxLength=316),
    "status": s(enum=["True", "False", "Unknown"]),
    "observedGeneration": i64(),
    "lastTransitionTime": s(format="date-time"),
    "reason": s(maxLength=1024),
    "message": s(maxLength=32768),
}, required=["type", "status", "lastTransitionTime", "reason", "message"])

MODULE_SPEC = obj({
    "selector": strmap("Node label selector (all pairs must match)."),
    "tolerations": TOLERATIONS,
    "moduleLoader": obj({
        "container": ML_CONTAINER,
        "serviceAccountName": s("Service account of the worker pods."),
    }, required=["container"]),
    "devicePlugin": DEVICE_PLUGIN,
    "dra": DRA,
    "imageRepoSecret": local_ref("Pull secret for the kmod and device-plugin images."),
    "imageRebuildTriggerGeneration": i64("Change it to re-verify all images and rebuild."),
}, required=["selector"], **{"x-kubernetes-validations": [{
    "rule": "!(has(self.dra) && has(self.devicePlugin))",
    "message": "spec.dra and spec.devicePlugin are mutually exclusive",
}]})

MODULE_STATUS = obj({
    "moduleLoader": DS_STATUS,
    "devicePlugin": DS_STATUS,
    "dra": DS_STATUS,
    "imageRebuildTriggerGeneration": i64(),
    "conditions": arr(CONDITION, "kmm addition: Ready/Progressing/Degraded style conditions.",
                      **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
})

MODULE_CONFIG = obj({
    "kernelVersion": s(),
    "containerImage": s(),
    "imagePullPolicy": s(default="IfNotPresent", enum=["Always", "IfNotPresent", "Never"]),
    "insecurePull": b(),
    "inTreeModulesToRemove": arr(s()),
    "inTreeModuleToRemove": s(),
    "modprobe": MODPROBE,
}, required=["containerImage", "kernelVersion", "modprobe"])

NMC_ITEM = {
    "name": s(),
    "namespace": s(),
    "serviceAccountName": s(),
    "imageRepoSecret": local_ref(),
    "tolerations": arr(TOLERATION),
    "version": s(),
    "config": MODULE_CONFIG,
}

MODULE_IMAGE_SPEC = {
    "image": s(),
    "kernelVersion": s(),
    "build": BUILD,
    "sign": SIGN,
    "skipWaitMissingImage": b(),
    "registryTLS": tls("Registry TLS options."),
    "dirName": s(default="/opt"),
}


def meta_schema():
    return {"type": "object"}


def root(spec, status, spec_required=True):
    props = {
        "apiVersion": s(),
        "kind": s(),
        "metadata": meta_schema(),
        "spec": spec,
    }
    if status:
        props["status"] = status
    d = {"type": "object", "properties": props}
    if spec_required:
        d["required"] = ["spec"]
    return {"openAPIV3Schema": d}


def crd(plural, kind, scope, versions, short=None, conversion=None, group=GROUP):
    names = {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()}
    if short:
        names["shortNames"] = short
    spec = {"group": group, "names": names, "scope": scope, "versions": versions}
    if conversion:
        spec["conversion"] = conversion
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": spec,
    }


def version(name, schema, columns=None, storage=True, deprecated=False):
    v = {"name": name, "served": True, "storage": storage}
    if deprecated:
        v["deprecated"] = True
    if columns:
        v["additionalPrinterColumns"] = columns
    v["schema"] = schema
    v["subresources"] = {"status": {}}
    return v


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def col(name, jp, typ="integer", desc=None, priority=None):
    c = {"name": name, "type": typ, "jsonPath": jp}
    if desc:
        c["description"] = desc
    if priority:
        c["priority"] = priority
    return c


MODULE = crd("modules", "Module", "Namespaced", [version("v1beta1", root(MODULE_SPEC, MODULE_STATUS), columns=[
    col("Loaded", ".status.moduleLoader.availableNumber", desc="Nodes where the module is loaded"),
    col("Desired", ".status.moduleLoader.desiredNumber", desc="Nodes that should have the module loaded"),
    col("Matching", ".status.moduleLoader.nodesMatchingSelectorNumber",
        desc="Schedulable nodes matching the selector", priority=1),
    col("Device-Plugins", ".status.devicePlugin.availableNumber",
        desc="Nodes with an available device plugin pod"),
    col("DRA", ".status.dra.availableNumber", desc="Nodes with an available DRA driver pod", priority=1),
    AGE,
])])

NMC = crd("nodemodulesconfigs", "NodeModulesConfig", "Cluster", [version("v1beta1", root(
    obj({"modules": arr(obj(dict(NMC_ITEM), required=["name", "namespace", "config"]))}),
    obj({"modules": arr(obj(dict(NMC_ITEM, bootId=s(), lastTransitionTime=s(format="date-time")),
                            required=["name", "namespace", "config"]))}),
), columns=[
    col("Configured", ".spec.modules[*].name", "string", "Modules in the spec (to be loaded)"),
    col("Loaded", ".status.modules[*].name", "string", "Modules the worker loaded"),
    AGE,
])], short=["nmc"])

MIC = crd("moduleimagesconfigs", "ModuleImagesConfig", "Namespaced", [version("v1beta1", root(
    obj({
        "images": arr(obj(dict(MODULE_IMAGE_SPEC), required=["image", "kernelVersion"])),
        "imageRepoSecret": local_ref(),
        "imagePullPolicy": s(default="IfNotPresent", enum=["Always", "IfNotPresent", "Never"]),
        "pushBuiltImage": b(),
        "imageRebuildTriggerGeneration": i64(),
        "tolerations": arr(TOLERATION),
    }, required=["images"]),
    obj({
        "imagesStates": arr(obj({
            "image": s(),
            "status": s(enum=["Exists", "DoesNotExist", "NeedsBuilding", "NeedsSigning"]),
        }, required=["image", "status"])),
        "imageRebuildTriggerGeneration": i64(),
    }),
), columns=[col("Images", ".spec.images[*].image", "string", priority=1), AGE])], short=["mic"])

MBSC = crd("modulebuildsignconfigs", "ModuleBuildSignConfig", "Namespaced", [version("v1beta1", root(
    obj({
        "images": arr(obj(dict(MODULE_IMAGE_SPEC, action=s(enum=["BuildImage", "SignImage"])),
                          required=["image", "kernelVersion", "action"])),
        "imageRepoSecret": local_ref(),
        "pushBuiltImage": b(),
        "tolerations": arr(TOLERATION),
    }, required=["images"]),
    obj({
        "images": arr(obj({
            "image": s(),
            "action": s(enum=["BuildImage", "SignImage"]),
            "status": s(enum=["Success", "Failure"]),
        }, required=["image", "action", "status"])),
    }),
), columns=[col("Images", ".spec.images[*].image", "string", priority=1), AGE])], short=["mbsc"])

PFV_SPEC = obj({
    "kernelVersion": s("Kernel version to validate every Module against."),
    "pushBuiltImage": b("Push images built during the validation."),
}, required=["kernelVersion"])

PFV_STATUS_FIELDS = {
    "verificationStatus": s(enum=["Success", "Failure", "InProgress"]),
    "verificationStage": s(enum=["Image", "Done"]),
    "statusReason": s(),
    "lastTransitionTime": s(format="date-time"),
}

PFV = crd("preflightvalidations", "PreflightValidation", "Cluster", [
    version("v1beta1", root(PFV_SPEC, obj({
        "crStatuses": {"type": "object", "additionalProperties": obj(
            dict(PFV_STATUS_FIELDS), required=["lastTransitionTime", "verificationStatus"]),
            "description": "Keyed by <namespace>/<name> of the Module."},
    })), storage=False, deprecated=True,
        columns=[col("Kernel", ".spec.kernelVersion", "string"), AGE]),
    version("v1beta2", root(PFV_SPEC, obj({
        "modules": arr(obj(dict({"name": s(), "namespace": s()}, **PFV_STATUS_FIELDS),
                           required=["name", "namespace", "lastTransitionTime", "verificationStatus"]),
                       **{"x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["namespace", "name"]}),
    })), columns=[col("Kernel", ".spec.kernelVersion", "string"), AGE]),
], short=["pfv"], conversion={
    "strategy": "Webhook",
    "webhook": {
        "conversionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "kmm-operator-webhook-service",
                                     "namespace": "kmm-operator-system", "path": "/convert"}},
    },
})

# The hub's CRD (docs/hub-spoke.md): its own directory, so that only the hub
# overlay (deploy/hub) installs it.
HUB_GROUP = "hub.kmm.sigs.x-k8s.io"

MCM = crd("managedclustermodules", "ManagedClusterModule", "Cluster", [version("v1beta1", root(
    obj({
        "moduleSpec": dict(MODULE_SPEC, description="The Module's spec each selected cluster gets; "
                           "the hub builds and signs its images and hands out literal mappings."),
        "spokeNamespace": s("Namespace of the Module on the spokes.", minLength=1),
        "selector": strmap("ManagedCluster label selector (all pairs must match)."),
    }, required=["moduleSpec", "spokeNamespace", "selector"]),
    obj({
        "numberDesired": i32("ManifestWorks the hub made for selected clusters."),
        "numberApplied": i32("ManifestWorks whose Applied condition is True."),
        "numberDegraded": i32("ManifestWorks whose Degraded condition is True."),
        "conditions": arr(CONDITION, "kmm addition: Ready/Progressing/Degraded style conditions.",
                          **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    }),
), columns=[
    col("Desired", ".status.numberDesired", desc="Selected clusters with a ManifestWork"),
    col("Applied", ".status.numberApplied", desc="ManifestWorks applied on their spoke"),
    col("Degraded", ".status.numberDegraded", desc="ManifestWorks degraded on their spoke"),
    col("Spoke-Namespace", ".spec.spokeNamespace", "string", priority=1),
    AGE,
])], group=HUB_GROUP)

HUB_FILES = {
    "hub.kmm.sigs.x-k8s.io_managedclustermodules.yaml": MCM,
}

FILES = {
    "kmm.sigs.x-k8s.io_modules.yaml": MODULE,
    "kmm.sigs.x-k8s.io_nodemodulesconfigs.yaml": NMC,
    "kmm.sigs.x-k8s.io_moduleimagesconfigs.yaml": MIC,
    "kmm.sigs.x-k8s.io_modulebuildsignconfigs.yaml": MBSC,
    "kmm.sigs.x-k8s.io_preflightvalidations.yaml": PFV,
}

# --- YAML output (block style; a string is quoted unless it is plainly a string) ---

PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./ ,()<>-]*$")
RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if (PLAIN.match(v) and v.lower() not in RESERVED and not v.endswith(" ")
            and ": " not in v and " #" not in v):
        return v
    return json.dumps(v)


def emit(v, indent=0):
    pad = " " * indent
    out = []
    if isinstance(v, dict):
        if not v:
            return ["{}"]
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append(f"{pad}{scalar(k)}:")
                out.extend(emit(x, indent + 2) if isinstance(x, dict) else emit(x, indent))
            else:
                out.append(f"{pad}{scalar(k)}: {emit(x)[0] if isinstance(x, (dict, list)) else scalar(x)}")
        return out
    if isinstance(v, list):
        if not v:
            return ["[]"]
        for x in v:
            if isinstance(x, dict) and x:
                sub = emit(x, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out.extend(sub[1:])
            elif isinstance(x, list) and x:
                out.append(f"{pad}-")
                out.extend(emit(x, indent + 2))
            else:
                out.append(f"{pad}- {emit(x)[0] if isinstance(x, (dict, list)) else scalar(x)}")
        return out
    return [pad + scalar(v)]


HEADER = "# SPDX-License-Identifier: Apache-2.0\n# Generated by deploy/crd/generate.py; do not edit.\n---\n"


def render(doc):
    return HEADER + "\n".join(emit(doc)) + "\n"


def write_dir(directory, files, check, drift):
    """Writes (or with check, compares) files and their kustomization.yaml."""
    rendered = {name: render(doc) for name, doc in files.items()}
    rendered["kustomization.yaml"] = ("# SPDX-License-Identifier: Apache-2.0\nresources:\n" +
                                      "".join(f"- {n}\n" for n in files))
    for name, text in rendered.items():
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, HERE)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        drift.append(rel)
            except FileNotFoundError:
                drift.append(rel)
        else:
            os.makedirs(directory, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)


def main():
    check = "--check" in sys.argv[1:]
    drift = []
    write_dir(HERE, FILES, check, drift)
    write_dir(os.path.join(HERE, "hub"), HUB_FILES, check, drift)
    if drift:
        print("CRDs out of date, run deploy/crd/generate.py:", " ".join(drift))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
