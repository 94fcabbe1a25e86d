# Class definitions of the Occ3D-nuScenes benchmark and the nuScenes lidarseg taxonomy.
# Data, not code: every tool and model reads classes from here through the config.

# Occ3D semantic classes; "free" is not part of the list: its index is the one after it (17).
_occ_class_names = [
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
]
_ignore_index = 255

# nuScenes lidarseg categories, position = the `index` field of category.json.
_lidarseg_category_names = [
    "noise",
    "animal",
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bicycle",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.car",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
    "flat.driveable_surface",
    "flat.other",
    "flat.sidewalk",
    "flat.terrain",
    "static.manmade",
    "static.other",
    "static.vegetation",
    "vehicle.ego",
]

# lidarseg category name -> Occ3D class name ("ignore" -> ignore_index). Unlisted -> ignore.
_learning_map = {
    "noise": "ignore",
    "animal": "others",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.personal_mobility": "ignore",
    "human.pedestrian.police_officer": "pedestrian",
    "human.pedestrian.stroller": "ignore",
    "human.pedestrian.wheelchair": "ignore",
    "movable_object.barrier": "barrier",
    "movable_object.debris": "others",
    "movable_object.pushable_pullable": "others",
    "movable_object.trafficcone": "traffic_cone",
    "static_object.bicycle_rack": "others",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.emergency.ambulance": "others",
    "vehicle.emergency.police": "others",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface",
    "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "static.manmade": "manmade",
    "static.other": "others",
    "static.vegetation": "vegetation",
    "vehicle.ego": "ignore",
}

# Classes that move: rays of adjacent frames hitting them are not trusted.
_dynamic_class_names = [
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "trailer",
    "truck",
]

data = dict(
    classes=dict(
        occ_class_names=_occ_class_names,
        ignore_index=_ignore_index,
        lidarseg_category_names=_lidarseg_category_names,
        learning_map=_learning_map,
        dynamic_class_names=_dynamic_class_names,
    ),
)
